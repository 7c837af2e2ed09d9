"""The methods the few-shot benchmark compares, as train.py flags (issue 8).

Everything else (network, batch, seed, kimg, data, schedule) is shared by all methods and
set by run.py; a method only chooses the augmentation and whether D has CHAIN
(Ni & Koniusz, CVPR 2024).
"""

from typing import Dict, List

import dnnlib

#----------------------------------------------------------------------------

METHODS: Dict[str, dnnlib.EasyDict] = {
    'noaug':            dnnlib.EasyDict(label='no augmentation',        flags=['--aug=noaug']),
    'da':               dnnlib.EasyDict(label='DA',                     flags=['--aug=diffaug', '--diffaug=color,translation,cutout']),
    'ada':              dnnlib.EasyDict(label='ADA (bgc)',              flags=['--aug=ada', '--augpipe=bgc']),
    'da_chain_running': dnnlib.EasyDict(label='DA + CHAIN (running)',   flags=['--aug=diffaug', '--diffaug=color,translation,cutout', '--chain=running']),
    'da_chain_batch':   dnnlib.EasyDict(label='DA + CHAIN (batch)',     flags=['--aug=diffaug', '--diffaug=color,translation,cutout', '--chain=batch']),
}

# Most expensive first (ADA's pipe costs more per batch than DiffAugment; CHAIN adds a
# little): the calibration run uses the first selected one, so every run fits the budget.
COST_ORDER = ['ada', 'da_chain_batch', 'da_chain_running', 'da', 'noaug']

#----------------------------------------------------------------------------

def parse_methods(text: str) -> List[str]:
    """'da,ada' -> ['da', 'ada'] in the order given; 'all' -> every method. Raises ValueError."""
    text = (text or '').strip()
    if text == 'all':
        return list(METHODS)
    names = [name.strip() for name in text.split(',') if name.strip()]
    if not names:
        raise ValueError(f'--methods is empty; give a comma-separated list of {", ".join(METHODS)}, or all')
    bad = [name for name in names if name not in METHODS]
    if bad:
        raise ValueError(f'unknown method(s) {", ".join(bad)}; valid: {", ".join(METHODS)}, or all')
    if len(set(names)) != len(names):
        raise ValueError(f'--methods lists a method twice ({text}); give each once')
    return names


def costliest(names: List[str]) -> str:
    """The selected method expected to be slowest per kimg (used for calibration)."""
    return min(names, key=COST_ORDER.index)

#----------------------------------------------------------------------------
