import sys

from atl_pipeline.cli import main

sys.exit(main())
