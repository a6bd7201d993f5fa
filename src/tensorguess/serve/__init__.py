"""serve.sh: the HTTP server and its page, scoring photos sent to it through a classifier."""
