"""Settings for the fault suite's worker processes: the test's database, its own SMTPRELAY keys."""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import SMTPRELAY

DATABASES = {"default": json.loads(os.environ["SMTPRELAY_FAULT_WORKER_DB"])}
SMTPRELAY = {**SMTPRELAY, **json.loads(os.environ.get("SMTPRELAY_FAULT_WORKER_RELAY", "{}"))}
