#!/usr/bin/env bash
# The load benchmark is issue 7; until it lands, say so plainly and fail.
echo "make bench: the load benchmark (issue 7) is not built yet" >&2
exit 2
