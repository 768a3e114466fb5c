"""The OCI distribution client (references, auth files, registry API) and the remote store on a
registry."""
