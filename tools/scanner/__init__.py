"""The built-in vulnerability and secret scanner behind the ``security-scanner`` tools.

Modules, one concern each:

- ``versions``: version ordering per ecosystem (dpkg, PEP 440, SemVer)
- ``cvss``: CVSS v2/v3 base scores from vectors, and severity bands
- ``osv``: OSV advisory parsing and range evaluation
- ``advisories``: the offline advisory directory, indexed by package
- ``inventory``: installed packages from dpkg status, Python metadata, npm package.json
- ``image_export``: an image's inventory streamed from the Docker Engine export API
- ``matching``: inventory x advisories -> vulnerabilities; severity threshold
- ``manifests``: pip requirements and npm lock/package files
- ``secrets`` and ``filescan``: hard-coded secrets and risky code in a file tree
- ``trivy``: running Trivy instead, when it is installed and allowed

Nothing here imports the tool registry or the adapters; the adapter
``tools.adapters.security_scanner`` composes these pieces.
"""
