"""Importing district spreadsheets (``.xlsx``, ``.csv``) through the ordinary commands.

Three kinds (``kinds.py``): ``institutions`` (registerInstitution, and approveInstitution
when a licence number is given), ``inspections`` (recordInspection: one row per visit,
rows grouped into batches) and ``orders`` (recordPrepaidOrder). A sheet is read as it
streams (``reading.py``), hostile files are refused before they are opened
(``safety.py``), every row becomes commands sent through a ``send`` callable
(``runner.py``), and re-importing a file changes nothing. ``jobs.py`` runs imports as
asyncio tasks for the HTTP side; ``cli.py`` is the command line's body; ``template.py``
writes blank templates. No HTTP or GraphQL here.
"""

from services.importing.jobs import ImportJob, ImportJobs, JobStatus
from services.importing.kinds import KINDS, institution_id
from services.importing.runner import Counts, ImportResult, RowError, Send, import_file
from services.importing.safety import Refused, escape_for_spreadsheet
from services.importing.template import write_template

__all__ = [
    "KINDS",
    "Counts",
    "ImportJob",
    "ImportJobs",
    "ImportResult",
    "JobStatus",
    "Refused",
    "RowError",
    "Send",
    "escape_for_spreadsheet",
    "import_file",
    "institution_id",
    "write_template",
]
