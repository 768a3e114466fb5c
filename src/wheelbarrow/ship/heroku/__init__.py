"""Heroku: the classic buildpack (bin/compile, bin/release) and the Cloud Native Buildpack."""
