"""`python -m trading_pipeline.cli …` runs the same command as `trading-pipeline …`."""

import sys

from trading_pipeline.cli.main import main

sys.exit(main())
