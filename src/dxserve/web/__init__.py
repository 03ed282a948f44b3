"""The web app served at ``/``: the clinician's pages and the admin console, server-rendered
(Jinja2 templates in ``templates/``) with vendored, versioned assets in ``static/`` (htmx,
uPlot, each with its licence) and no inline script."""
