"""MaskLoop's jobs on a Ray cluster (the optional extra ``maskloop[cluster]``).

Bulk embedding (``embed_job``), a generic per-image map on model actors (``image_map``, the
seam ``autolabel --ray`` plugs into) and the server as a Ray Serve app (``serve_app``).
Ray is imported lazily (``ray_env.require_ray``): nothing outside ``--ray`` needs it.
"""
