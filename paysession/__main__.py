import sys

from paysession.cli import main

sys.exit(main())
