"""OCI images without a daemon: layers, layouts, registries, and the image build."""
