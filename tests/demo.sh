#!/usr/bin/env bash
# make demo: shows policyd enforcing policy-examples/redis.conf on real
# redis traffic. It needs the data plane (BPF programs and `policyd run`),
# which this build does not have yet; until then it says so.
echo "make demo: this build has the policy compiler only ('policyd check', 'policyd dump');"
echo "the data plane that enforces a policy on live sockets is not built yet."
echo "Try: build/policyd check -c policy-examples/redis.conf"
exit 1
