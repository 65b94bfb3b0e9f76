import sys

from ageest.cli import main

sys.exit(main())
