"""The tool layer: namespaced tools behind one ``Toolbox.call_tool(name, args)``.

Siblings of ``bus/``: this package never imports it.
"""
