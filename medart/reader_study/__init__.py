"""Blinded "real or generated?" reader studies: can clinicians tell our images from real ones?

`store` keeps studies, readers and answers in the workspace database (owner codes hashed);
`images` encodes both kinds identically; `sets` chooses the real images and generates their
counterparts; `stats` computes accuracy, intervals, p-values and agreement; `report` writes
the table and plot. The reader's page is `medart.ui.reader_page`; the owner's tab
`medart.ui.reader_study`.
"""

from medart.reader_study.store import (
    CSV_COLUMNS,
    OWNER_CODE_MIN,
    READER_URL,
    AnswerRow,
    Reader,
    ReaderStudies,
    Shown,
    Study,
    StudyImage,
    check_owner_code,
    clean_name,
    order_seed,
    owner_code_matches,
    reader_link,
)

__all__ = ["CSV_COLUMNS", "OWNER_CODE_MIN", "READER_URL", "AnswerRow", "Reader", "ReaderStudies", "Shown", "Study", "StudyImage",
           "check_owner_code", "clean_name", "order_seed", "owner_code_matches", "reader_link"]
