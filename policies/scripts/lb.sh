#!/bin/sh
# Example `before`/`after` hook: a real one would tell the load balancer to drain or enable
# a backend. This one only says what it would do.
set -eu
action=$1
host=$2
echo "lb: would $action $host"
