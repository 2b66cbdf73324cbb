"""The Chinese names the report prints for the contract's enums and levels."""

from __future__ import annotations

FINDING_TYPES: dict[str, str] = {
    "FIRE_SAFETY": "消防安全",
    "STAFF_QUALIFICATION": "从业人员资质",
    "TRAINING_MATERIAL": "培训材料",
    "FEES": "收费",
    "HOLIDAY_SUBJECT_TRAINING": "节假日学科培训",
    "HIDDEN_TRAINING": "隐形变异培训",
    "UNLICENSED_OPERATION": "无证办学",
    "FALSE_ADVERTISING": "虚假宣传",
    "OTHER": "其他",
}

COMPLAINT_CHANNELS: dict[str, str] = {
    "PLATFORM": "监管平台",
    "HOTLINE_12345": "12345热线",
    "PETITION": "信访",
    "ONLINE": "网络",
    "OTHER": "其他",
}

CHILD_LEVELS: dict[str, str] = {"PROVINCE": "市（州）", "CITY": "区（县）", "DISTRICT": ""}
