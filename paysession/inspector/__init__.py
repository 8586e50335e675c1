"""``paysession inspect``: a read-only web page over a store, for the people who answer
"why was this payment canceled?" (the ``inspect`` extra: Starlette, Jinja2, uvicorn).

``views`` reads what each page shows and needs no web framework; ``drawing`` draws the
state diagram and the status chart as inline SVG; ``app`` serves them.
"""
