import sys

from live.server import main

sys.exit(main())
