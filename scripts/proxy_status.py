"""Print the proxy's view of its backends (``make status``): python scripts/proxy_status.py [ADMIN_URL]"""
import json
import sys
import urllib.request

url = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8090") + "/status"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        status = json.load(response)
except OSError as exc:
    sys.exit(f"proxy: not answering at {url} ({exc})")
totals = status["totals"]
print(f"proxy ({status['strategy']}): {status['client_connections']} client connections, "
      f"{totals['requests']} requests, {totals['errors']} errors, {totals['refused']} refused")
for b in status["backends"]:
    latency = b["latency_ms"]
    print(f"  {b['name']:16} {b['state']:9} in flight {b['in_flight']:3}  requests {b['requests']:8}  "
          f"failures {b['failures']:4}  ejections {b['ejections']:3}  p50/p99 {latency['p50']}/{latency['p99']} ms")
