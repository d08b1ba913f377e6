"""UAPT on Attend2u Instagram: `personalized_attend2u.py --kind instagram` under its own name.

Example (DATA holds json/insta-caption-{train,test1,test2}.json, images/{user}_@_{post}):
    python recipes/personalized_instagram.py --data /data/attend2u --out runs/uapt-instagram

Every option and the leakage rules: `recipes/personalized_attend2u.py` (`--help`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from personalized_attend2u import main_for  # noqa: E402
from recipe_common import run_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_main(lambda: main_for("instagram")))
