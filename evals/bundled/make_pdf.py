"""Build the bundled harbour report PDF from the text below, byte for byte the same on every run.

Run from anywhere: `python evals/bundled/make_pdf.py`. It needs `reportlab`; the PDF uses
the standard Helvetica fonts (not embedded) and an invariant timestamp, so the output stays small
and stable.
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus" / "harbour-report-2023.pdf"

TITLE = "Varrow Point Harbour Authority: Annual Report 2023"

PARAGRAPHS = [
    (
        "Summary",
        "The Varrow Point Harbour Authority manages the harbour, the Fish Quay, the ferry berths "
        "at Quay 3 and the approach channel from Saltreach Bay. This report covers the calendar "
        "year 2023. The harbour master, Callum Rosseter, has held the post since 2017 and "
        "reports to a board of seven members appointed by the town council.",
    ),
    (
        "Traffic",
        "The harbour recorded 1,214 commercial vessel arrivals in 2023, up from 1,106 in 2022. "
        "The figure counts ferry arrivals from the Isle of Aubry only once per day, fishing "
        "boats of the Saltreach Fishermen's Cooperative, cargo ships bringing timber and salt, "
        "and service vessels for the Gannet Ridge wind farm. Leisure craft are counted "
        "separately: 2,870 visiting yachts stayed at least one night.",
    ),
    (
        "Channel dredging",
        "Silt carried down the River Kestrel narrows the approach channel every winter. In "
        "March and April 2023 a contractor dredged the channel to a depth of 7.5 metres at "
        "the lowest tide, so that the larger cargo ships can enter at any state of the tide. "
        "The spoil was used to build up the beach in front of the sea wall.",
    ),
    (
        "Visitor pontoon",
        "A new visitor pontoon with 60 berths opened in June 2023 beside the Customs House. It "
        "was busy from its first week and was full on every night of the Festival of the Long "
        "Tide. Berth fees are charged per metre of boat length and per night.",
    ),
    (
        "Finances",
        "Harbour revenue reached 6.3 million crowns in 2023, of which fees from cargo ships "
        "made up almost half. The Authority spent 2.2 million crowns on the dredging and 1.4 "
        "million crowns on the pontoon. It ended the year with a small surplus, which will be "
        "set aside for repairs to the Fish Quay market hall roof.",
    ),
    (
        "Outlook",
        "The board expects traffic to keep growing as the Brinewell Desalination Plant "
        "expansion brings construction vessels to the harbour. The harbour master has asked "
        "the council to plan for higher storm surges when it raises the sea wall.",
    ),
]


def build(path: Path = OUT) -> Path:
    """Write the PDF; `invariant=1` fixes the timestamp and id so git sees no change on rebuild."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    story = [Paragraph(TITLE, styles["Title"]), Spacer(1, 12)]
    for heading, text in PARAGRAPHS:
        story.append(Paragraph(heading, styles["Heading2"]))
        story.append(Paragraph(text, styles["BodyText"]))
    doc = SimpleDocTemplate(
        str(path), pagesize=A4, title=TITLE, author="Varrow Point Harbour Authority", invariant=1
    )
    doc.build(story)
    return path


if __name__ == "__main__":
    out = build()
    print(f"wrote {out} ({out.stat().st_size} bytes)")
