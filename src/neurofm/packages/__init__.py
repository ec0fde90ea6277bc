"""Model packages (docs/packages.md): a folder or archive with manifest.yaml, weights, a self-test.

- :mod:`~neurofm.packages.manifest` — the manifest (pydantic) and its JSON Schema;
- :mod:`~neurofm.packages.hashing` / :mod:`~neurofm.packages.archive` — sha256 integrity and safe
  extraction of .tar.gz/.zip packages;
- :mod:`~neurofm.packages.sandbox` — the process sandbox (bubblewrap, ``unshare -rn`` or none);
- :mod:`~neurofm.packages.runner` — run a package on a case, split, dataset or DICOM study, validate
  and collect its outputs; :mod:`~neurofm.packages.verify`, :mod:`~neurofm.packages.build`,
  :mod:`~neurofm.packages.comparison`, :mod:`~neurofm.packages.export_fomo25` build on it.

Nothing is imported here: the in-sandbox :mod:`~neurofm.packages.launcher` must start fast.
"""
