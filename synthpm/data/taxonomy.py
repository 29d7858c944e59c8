"""8-K items and the event taxonomy (docs/design.md §1).

Item numbers since August 2004 are "section.item" ("2.02"); filings before that used whole
numbers ("5", "12"), which EDGAR still lists for old filings. Both map into one taxonomy, so
a 1999 "Item 12" and a 2020 "Item 2.02" are both `results`.
"""

from __future__ import annotations

from typing import NamedTuple


class EventKind(NamedTuple):
    """What a filing is: its type in the event taxonomy, and what that means in words."""

    event_type: str
    meaning: str


# item -> (event_type, meaning). The meaning is the SEC's item title, shortened.
ITEMS_8K: dict[str, tuple[str, str]] = {
    "1.01": ("material_agreement", "Entry into a material definitive agreement"),
    "1.02": ("agreement_terminated", "Termination of a material definitive agreement"),
    "1.03": ("bankruptcy", "Bankruptcy or receivership"),
    "1.04": ("mine_safety", "Mine safety: shutdowns and patterns of violations"),
    "1.05": ("cybersecurity_incident", "Material cybersecurity incident"),
    "2.01": ("acquisition_disposal", "Completion of acquisition or disposition of assets"),
    "2.02": ("results", "Results of operations and financial condition"),
    "2.03": ("new_debt", "Creation of a direct financial obligation"),
    "2.04": ("debt_acceleration", "Triggering events that accelerate a financial obligation"),
    "2.05": ("exit_costs", "Costs of exit or disposal activities (e.g. workforce reduction)"),
    "2.06": ("impairment", "Material impairment"),
    "3.01": ("delisting_notice", "Notice of delisting or failure to meet a listing rule"),
    "3.02": ("unregistered_equity_sale", "Unregistered sale of equity securities"),
    "3.03": ("rights_modified", "Material modification to rights of security holders"),
    "4.01": ("auditor_change", "Change in the registrant's certifying accountant"),
    "4.02": ("restatement", "Non-reliance on previously issued financial statements"),
    "5.01": ("control_change", "Change in control of the registrant"),
    "5.02": ("officer_director_change", "Departure or appointment of directors or officers"),
    "5.03": ("bylaws_amended", "Amendments to articles or bylaws; change in fiscal year"),
    "5.04": ("benefit_plan_suspension", "Temporary suspension of trading under benefit plans"),
    "5.05": ("ethics_code_change", "Amendment to or waiver of the code of ethics"),
    "5.06": ("shell_status_change", "Change in shell company status"),
    "5.07": ("shareholder_vote", "Submission of matters to a vote of security holders"),
    "5.08": ("shareholder_nominations", "Shareholder director nominations"),
    "6.01": ("abs_information", "Asset-backed securities informational material"),
    "6.02": ("abs_servicer_change", "Change of servicer or trustee"),
    "6.03": ("abs_credit_change", "Change in credit enhancement"),
    "6.04": ("abs_distribution_failure", "Failure to make a required distribution"),
    "6.05": ("abs_securities_act", "Securities Act updating disclosure"),
    "7.01": ("reg_fd_disclosure", "Regulation FD disclosure"),
    "8.01": ("other_event", "Other events"),
    "9.01": ("exhibits", "Financial statements and exhibits"),
}

# Pre-August-2004 8-K items.
LEGACY_ITEMS_8K: dict[str, tuple[str, str]] = {
    "1": ("control_change", "Changes in control of registrant"),
    "2": ("acquisition_disposal", "Acquisition or disposition of assets"),
    "3": ("bankruptcy", "Bankruptcy or receivership"),
    "4": ("auditor_change", "Changes in registrant's certifying accountant"),
    "5": ("other_event", "Other events"),
    "6": ("officer_director_change", "Resignations of registrant's directors"),
    "7": ("exhibits", "Financial statements and exhibits"),
    "8": ("bylaws_amended", "Change in fiscal year"),
    "9": ("reg_fd_disclosure", "Regulation FD disclosure"),
    "10": ("ethics_code_change", "Amendments to the code of ethics"),
    "11": ("benefit_plan_suspension", "Temporary suspension of trading under benefit plans"),
    "12": ("results", "Results of operations and financial condition"),
}

UNKNOWN_ITEM = EventKind("other_event", "Unrecognised 8-K item")
NO_ITEMS = EventKind("filing_8k", "8-K filed without structured items")
INSIDER_FILING = EventKind("insider_filing", "Form 4: statement of changes in beneficial ownership")

EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(
        {t for t, _ in (*ITEMS_8K.values(), *LEGACY_ITEMS_8K.values(), NO_ITEMS, INSIDER_FILING)}
    )
)


def classify_item(item: str) -> EventKind:
    """(event_type, meaning) of an 8-K item number such as "2.02" or legacy "12"."""
    item = item.strip()
    if item in ITEMS_8K:
        return EventKind(*ITEMS_8K[item])
    legacy = item.lstrip("0") or item
    return EventKind(*LEGACY_ITEMS_8K.get(legacy, UNKNOWN_ITEM))
