"""Home Assistant's template language for rule values, on Jinja2's immutable sandbox.

`environment` compiles and renders, `budget` bounds what a render may spend, `guards`
checks operators and methods before they build anything, `vocabulary` lists the functions,
filters and tests (`states`, `convert`, `timefuncs` implement Home Assistant's), `scope`
holds the run a render reads, and `results` reads the rendered text back as Home Assistant
does. `ruby_rules.templates` is the interface the rest of the package uses.
"""
