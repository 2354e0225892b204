"""bookings: the database refuses two bookings holding one charger at overlapping times

The unique index on (charger_id, slot_start) compares equal slot starts only: after a manager
changed slot_minutes from 30 to 60, a booking 07:00-08:00 went onto a charger booked 07:30-08:00
(issue 14, item 1). PostgreSQL: an exclusion constraint over (charger, time range); charger
equality is written as overlap of one-point int ranges, so no btree_gist extension is needed.
SQLite: BEFORE INSERT and BEFORE UPDATE triggers that ABORT on an overlapping booking.

Rows that already overlap would stop the constraint being added. A checked-in booking is history:
the later one of an overlapping pair loses its charger_id, as check-in does today when another
booking holds the charger (its charging session still says where it charged). Overlapping bookings
still ahead (booked, held) are refused with their ids, for the operator to settle first: this
migration does not pick which driver loses a booking.

Revision ID: ddd776fabd23
Revises: 90a8c308c831
Create Date: 2026-12-02 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ddd776fabd23'
down_revision = '90a8c308c831'
branch_labels = None
depends_on = None

NAME = "ex_bookings_charger_overlap"
HOLDING = "status IN ('booked', 'held', 'checked_in')"

CHECKED_IN_HISTORY = f"""
UPDATE bookings SET charger_id = NULL
WHERE status = 'checked_in' AND charger_id IS NOT NULL AND EXISTS (
    SELECT 1 FROM bookings AS other
    WHERE other.charger_id = bookings.charger_id AND other.id < bookings.id AND other.{HOLDING}
    AND other.slot_start < bookings.slot_end AND bookings.slot_start < other.slot_end
)"""

OVERLAPPING_PAIRS = f"""
SELECT a.id, b.id FROM bookings AS a JOIN bookings AS b ON b.charger_id = a.charger_id AND a.id < b.id
WHERE a.{HOLDING} AND b.{HOLDING}
AND a.slot_start < b.slot_end AND b.slot_start < a.slot_end
AND a.slot_start < a.slot_end AND b.slot_start < b.slot_end
ORDER BY a.id, b.id"""

POSTGRESQL = f"""
ALTER TABLE bookings ADD CONSTRAINT {NAME} EXCLUDE USING gist (
    int4range(charger_id, charger_id, '[]') WITH &&, tsrange(slot_start, slot_end) WITH &&
) WHERE ({HOLDING} AND charger_id IS NOT NULL)"""


def sqlite_trigger(when):
    update = when == "update"
    return f"""
CREATE TRIGGER tr_bookings_charger_overlap_{when}
BEFORE {"UPDATE OF charger_id, status, slot_start, slot_end" if update else "INSERT"} ON bookings
FOR EACH ROW WHEN NEW.charger_id IS NOT NULL AND NEW.{HOLDING}
    AND NEW.slot_start < NEW.slot_end
BEGIN
    SELECT RAISE(ABORT, '{NAME}: that charger has a booking at an overlapping time')
    WHERE EXISTS (
        SELECT 1 FROM bookings WHERE charger_id = NEW.charger_id AND {HOLDING}
        AND slot_start < NEW.slot_end AND NEW.slot_start < slot_end{" AND id != NEW.id" if update else ""}
    );
END"""


def upgrade():
    op.execute(CHECKED_IN_HISTORY)
    pairs = op.get_bind().execute(sa.text(OVERLAPPING_PAIRS)).all()
    if pairs:
        raise RuntimeError(
            f"{len(pairs)} pair(s) of bookings hold one charger at overlapping times (booking ids): "
            f"{[tuple(p) for p in pairs[:20]]}. Cancel or move one of each pair, then upgrade again.")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL)
    else:
        op.execute(sqlite_trigger("insert"))
        op.execute(sqlite_trigger("update"))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE bookings DROP CONSTRAINT {NAME}")
    else:
        op.execute("DROP TRIGGER tr_bookings_charger_overlap_update")
        op.execute("DROP TRIGGER tr_bookings_charger_overlap_insert")
