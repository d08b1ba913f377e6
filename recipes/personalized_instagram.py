"""UAPT on Attend2u Instagram with real weights (CLIP ViT-B/32 + GPT-2 by default).

Data: the Attend2u JSON files and images, from a local path you provide (they are not shipped).

Example:
    python recipes/personalized_instagram.py --train insta-caption-train.json \
        --test1 insta-caption-test1.json --test2 insta-caption-test2.json \
        --images /data/instagram/images --out runs/insta-uapt --encoder open_clip:ViT-B-32/openai --lm gpt2

See `mmgpt2/personalization/attend2u_run.py` for the leakage rules and every option (`--help`).
"""

import sys

from personalized_attend2u import main_for

if __name__ == "__main__":
    sys.exit(main_for("instagram"))
