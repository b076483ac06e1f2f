"""Shared constants for the fixture scripts (paths, word lists, seeds)."""
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
REPO_DIR = TOOLS_DIR.parent
FIXTURES_DIR = REPO_DIR / "Tests" / "Fixtures"
VOCAB_DIR = FIXTURES_DIR / "vocab"
SMALL_SPIECE = VOCAB_DIR / "small" / "spiece.model"
T5_SPIECE = VOCAB_DIR / "t5" / "spiece.model"
MODELS_DIR = FIXTURES_DIR / "models"
TOKENIZER_GOLDEN_DIR = FIXTURES_DIR / "tokenizer"
CACHE_DIR = TOOLS_DIR / ".cache"
STATUS_FILE = Path("/tmp/fixtures-status.txt")

# The ~100 common English words of the demo task ("reverse: red apple blue" -> "blue apple red").
# make_vocab.py makes them frequent in the small-vocab corpus so each is one piece ("▁word");
# train_demo.py asserts that.
DEMO_WORDS = """
red blue green black white yellow orange brown pink gray
apple bread cake milk water tea rice fish egg soup
cat dog bird horse cow mouse lion bear fox wolf
house door window table chair bed book pen cup box
tree flower grass river lake sea hill rock sand snow
sun moon star rain wind cloud sky fire ice stone
car bus train boat ship road city town farm park
big small hot cold old new fast slow good bad
run walk jump swim sing read write eat sleep play
one two three four five six seven eight nine ten
""".split()
assert len(DEMO_WORDS) == 100 and len(set(DEMO_WORDS)) == 100

# Extra vocabulary for the generated corpus (not used by the demo task).
OTHER_NOUNS = """
man woman child friend teacher doctor king queen student family people world country
school garden kitchen village forest mountain island bridge market street morning evening
night week year day time music story letter picture song game question answer idea
""".split()
OTHER_VERBS = """
sees likes finds makes takes gives wants needs knows loves helps brings opens closes
builds paints buys sells carries watches
""".split()
OTHER_WORDS = """
the a an this that these those my your his her our their some every no
is are was were has have had will can could would should may might must
and or but because if when while after before then so very too also not
in on at under over near with without from to of for by about into
I you he she it we they me him us them what who where why how which
""".split()
