#!/bin/sh
# The image's entry point: the tensorguess CLI under the caller's umask.
# docker run has no --umask, and files written into mounted folders should get the
# permissions a local run would give them; the wrappers pass TG_UMASK=$(umask).
case ${TG_UMASK:-} in
  [0-7][0-7][0-7] | [0-7][0-7][0-7][0-7]) umask "$TG_UMASK" ;;
  *) umask 0022 ;;
esac
exec /opt/tensorguess/venv/bin/python -m tensorguess "$@"
