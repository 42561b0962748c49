"""The leaderboard: records -> one data model (``model``), its statistics (``stats``) and its
views for people (``report``: terminal Markdown and CSV; the site lives in ``peftbench.docgen``)."""

from peftbench.leaderboard.model import Leaderboard

__all__ = ["Leaderboard"]
