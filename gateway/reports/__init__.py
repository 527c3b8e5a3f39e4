"""TinyTrail's nine reports over any source of any dialect (issue 12): ``params`` (the common query
parameters and periods), ``data`` (aggregates for clean closed days, raw events for the rest),
``build`` (the document's shapes), ``csv``, ``routes`` (the HTTP side, through ``api_access``)."""
