"""UAPT on Attend2u YFCC100M: `personalized_attend2u.py --kind yfcc` under its own name.

Example (DATA holds json/yfcc-caption-{train,test}.json, images/{user_id}_{photo_id}):
    python recipes/personalized_yfcc.py --data /data/data_yfcc --out runs/uapt-yfcc

Every option and the leakage rules: `recipes/personalized_attend2u.py` (`--help`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from personalized_attend2u import main_for  # noqa: E402
from recipe_common import run_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_main(lambda: main_for("yfcc")))
