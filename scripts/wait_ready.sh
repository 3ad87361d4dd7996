#!/usr/bin/env bash
# wait_ready.sh URL SECONDS: wait until URL answers 200, or fail showing the app log.
url=$1; limit=${2:-60}
for ((i = 0; i < limit * 2; i++)); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = "200" ]; then exit 0; fi
  sleep 0.5
done
echo "ERROR: $url did not answer 200 within ${limit}s; last lines of var/log/proxy.log and var/log/app1.log:" >&2
tail -n 15 var/log/proxy.log >&2 || true; tail -n 15 var/log/app1.log >&2 || true
exit 1
