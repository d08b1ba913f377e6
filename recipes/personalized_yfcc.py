"""UAPT on Attend2u YFCC100M with real weights (CLIP ViT-B/32 + GPT-2 by default).

Data: the Attend2u JSON files and images, from a local path you provide (they are not shipped).

Example:
    python recipes/personalized_yfcc.py --train yfcc-train.json --field title \
        --test1 yfcc-test1.json --test2 yfcc-test2.json \
        --images /data/yfcc/images --out runs/yfcc-uapt --encoder open_clip:ViT-B-32/openai --lm gpt2

See `mmgpt2/personalization/attend2u_run.py` for the leakage rules and every option (`--help`).
"""

import sys

from personalized_attend2u import main_for

if __name__ == "__main__":
    sys.exit(main_for("yfcc"))
