package models

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"
)

// InsertMessages stores a batch of messages in one transaction and gives
// them their IDs.
//
// IDs are the delivery cursor, so they must be handed out in commit order
// and without gaps: a reader that has seen id N must be able to trust that
// every id below N is already committed. An auto-increment column does not
// promise that (ids are given at insert, and a later insert may commit
// first). Instead the transaction first bumps the one "messages" row of the
// sequences table. That UPDATE takes the row's write lock (on SQLite, the
// database's write lock) and keeps it until commit, so no other writer, on
// this instance or another, can take the next numbers until this batch has
// committed; and a rolled-back batch rolls its numbers back too. The
// message_count of every sender rises in the same transaction, so counts are
// exact under any concurrency.
//
// On success each message's ID is set, ascending in slice order, but for
// a join or leave superseded by a later decision already stored (see
// PresenceMark): it is not stored, and its ID stays 0.
func (s *Store) InsertMessages(ctx context.Context, msgs []*Message) error {
	if len(msgs) == 0 {
		return nil
	}
	// committing is set once every statement has succeeded: an error after
	// it came from COMMIT itself.
	committing := false
	// stored is what the transaction inserts: msgs, less superseded
	// presence messages.
	stored := msgs
	insert := func(tx *gorm.DB) error {
		stored = msgs
		if stamped(msgs) {
			var err error
			if stored, err = s.dropSuperseded(ctx, tx, msgs); err != nil {
				return err
			}
			if len(stored) == 0 {
				committing = true
				return nil
			}
		}
		first, err := s.takeIDs(tx, int64(len(stored)))
		if err != nil {
			return err
		}
		for i, m := range stored {
			m.ID = first + int64(i)
		}
		if err := insertRows(ctx, tx, stored, s.dialect); err != nil {
			return fmt.Errorf("inserting messages: %w", err)
		}
		if err := bumpCounts(ctx, tx, stored); err != nil {
			return err
		}
		committing = true
		return nil
	}
	var err error
	if s.dialect == SQLite {
		// The messages' foreign keys are checked at COMMIT (see
		// deferMessageKeys), and a COMMIT that fails on one leaves the
		// transaction open: it is rolled back here, on its connection,
		// before the connection goes back to the pool.
		err = s.db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
			err := conn.Transaction(insert)
			if err != nil && committing {
				// Whatever became of ctx; "no transaction is active" when
				// the failure had ended it.
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = conn.WithContext(rctx).Exec("ROLLBACK").Error
			}
			return err
		})
	} else {
		err = s.db.WithContext(ctx).Transaction(insert)
	}
	if err != nil && committing && s.dialect == MySQL && commitOutcomeUnknown(err) {
		err = s.settleCommit(stored, err)
	}
	if err != nil {
		for _, m := range msgs {
			m.ID = 0
		}
		return err
	}
	return nil
}

func stamped(msgs []*Message) bool {
	for _, m := range msgs {
		if m.PresenceStamp > 0 {
			return true
		}
	}
	return false
}

// dropSuperseded returns msgs without the joins and leaves whose stamp is
// not above their room and user's mark, each left with ID 0, and moves
// the marks up to the stamps kept.
//
// It first takes the sequence row's lock, which every batch's transaction
// holds until it ends (on SQLite, BEGIN IMMEDIATE already has): the marks
// read here cannot move before this batch commits, and whatever is
// stored after it gets later ids. So stored order follows decided order.
func (s *Store) dropSuperseded(ctx context.Context, tx *gorm.DB, msgs []*Message) ([]*Message, error) {
	conn := tx.Statement.ConnPool
	if s.dialect == MySQL {
		var seq int64
		err := conn.QueryRowContext(ctx, "SELECT value FROM sequences WHERE name = ? FOR UPDATE", messageSequence).Scan(&seq)
		if err != nil {
			return nil, fmt.Errorf("locking the sequence: %w", err)
		}
	}
	type pair struct {
		room string
		user int64
	}
	var text []byte
	text = append(text, "SELECT room, user_id, stamp FROM presence_marks WHERE user_id IN ("...)
	seen := map[int64]bool{}
	for _, m := range msgs {
		if m.PresenceStamp > 0 && !seen[m.UserID] {
			if len(seen) > 0 {
				text = append(text, ',')
			}
			seen[m.UserID] = true
			text = strconv.AppendInt(text, m.UserID, 10)
		}
	}
	text = append(text, ')')
	rows, err := conn.QueryContext(ctx, string(text))
	if err != nil {
		return nil, fmt.Errorf("reading presence marks: %w", err)
	}
	marks := map[pair]int64{}
	for rows.Next() {
		var (
			p     pair
			stamp int64
		)
		if err := rows.Scan(&p.room, &p.user, &stamp); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading presence marks: %w", err)
		}
		marks[p] = stamp
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("reading presence marks: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading presence marks: %w", err)
	}

	kept := make([]*Message, 0, len(msgs))
	var moved []pair
	for _, m := range msgs {
		if m.PresenceStamp <= 0 {
			kept = append(kept, m)
			continue
		}
		p := pair{m.Room, m.UserID}
		mark, had := marks[p]
		if had && m.PresenceStamp <= mark {
			m.ID = 0
			continue
		}
		marks[p] = m.PresenceStamp
		moved = append(moved, p)
		kept = append(kept, m)
	}
	if len(moved) == 0 {
		return kept, nil
	}
	slices.SortFunc(moved, func(a, b pair) int {
		return cmp.Or(cmp.Compare(a.room, b.room), cmp.Compare(a.user, b.user))
	})
	moved = slices.Compact(moved)
	text = append(text[:0], "INSERT INTO presence_marks (room, user_id, stamp) VALUES "...)
	args := make([]any, 0, len(moved))
	for i, p := range moved {
		if i > 0 {
			text = append(text, ", "...)
		}
		text = append(text, "(?, "...)
		text = strconv.AppendInt(text, p.user, 10)
		text = append(text, ", "...)
		text = strconv.AppendInt(text, marks[p], 10)
		text = append(text, ')')
		args = append(args, p.room)
	}
	if s.dialect == MySQL {
		text = append(text, " ON DUPLICATE KEY UPDATE stamp = VALUES(stamp)"...)
	} else {
		text = append(text, " ON CONFLICT (room, user_id) DO UPDATE SET stamp = excluded.stamp"...)
	}
	if _, err := conn.ExecContext(ctx, string(text), args...); err != nil {
		return nil, fmt.Errorf("moving presence marks: %w", err)
	}
	return kept, nil
}

// ErrOutcomeUnknown is returned by InsertMessages when the connection was
// lost after COMMIT was sent and whether the batch was stored could not be
// found out: it may have been, in full, or not at all.
var ErrOutcomeUnknown = errors.New("the commit was not confirmed and whether it took effect could not be checked")

// settleCommitTimeout bounds the check that follows an unconfirmed commit.
const settleCommitTimeout = 5 * time.Second

// commitOutcomeUnknown reports whether err, returned by COMMIT on MySQL,
// leaves open whether the transaction committed. Only an answer from the
// server (a MySQL error: a deadlock or a failed certification, say) says it
// did not; a lost connection, a timeout or a cancelled context may have cut
// the answer to a COMMIT the server carried out.
func commitOutcomeUnknown(err error) bool {
	var server *mysqldriver.MySQLError
	if errors.As(err, &server) {
		return false
	}
	// With TranslateError, gorm turns some server errors into its own.
	for _, known := range []error{gorm.ErrDuplicatedKey, gorm.ErrForeignKeyViolated, gorm.ErrCheckConstraintViolated} {
		if errors.Is(err, known) {
			return false
		}
	}
	return true
}

// settleCommit finds out, on another connection, whether a batch whose
// COMMIT went unanswered was stored. It first takes a shared lock on the
// sequence row, which the batch's transaction holds until it ends: if the
// server is still carrying that COMMIT (or still holds the transaction
// open), the check waits for it rather than reading too early. Then the
// batch's first row tells: a transaction commits whole or not at all. The
// row must be the batch's own (sender, room, body), since after a rollback
// another writer may have taken the same ids.
//
// It returns nil when the batch is stored (its ids stand), commitErr when
// it is not, and an error wrapping ErrOutcomeUnknown when the check fails.
func (s *Store) settleCommit(msgs []*Message, commitErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), settleCommitTimeout)
	defer cancel()
	check := func() (bool, error) {
		conn, err := s.db.DB()
		if err != nil {
			return false, err
		}
		c, err := conn.Conn(ctx) // one connection for both statements
		if err != nil {
			return false, err
		}
		defer c.Close()
		var seq int64
		if err := c.QueryRowContext(ctx, "SELECT value FROM sequences WHERE name = ? LOCK IN SHARE MODE", messageSequence).Scan(&seq); err != nil {
			return false, fmt.Errorf("waiting for the sequence row: %w", err)
		}
		m := msgs[0]
		var n int
		err = c.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages WHERE id = ? AND user_id = ? AND room = ? AND body = ?",
			m.ID, m.UserID, m.Room, m.Body).Scan(&n)
		if err != nil {
			return false, fmt.Errorf("looking for message %d: %w", m.ID, err)
		}
		return n == 1, nil
	}
	stored, err := check()
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w (checking: %w)", ErrOutcomeUnknown, commitErr, err)
	case stored:
		return nil
	}
	return commitErr
}

// takeIDs advances the message sequence by n and returns the first of the
// n ids it reserved, in one statement: SQLite has UPDATE ... RETURNING, and
// on MySQL the new value rides back in the statement's answer through
// LAST_INSERT_ID(expr), sparing a SELECT's round trip while the row is
// locked.
func (s *Store) takeIDs(tx *gorm.DB, n int64) (int64, error) {
	var (
		last    int64
		updated int64
	)
	if s.dialect == SQLite {
		// OR FAIL: with the default ABORT, a NOT NULL column lets the
		// UPDATE undo itself mid-way, and RETURNING makes it a statement
		// that may write twice; together they cost a statement journal
		// (a copy of every page it touches) that a one-row update never
		// needs.
		err := tx.Statement.ConnPool.QueryRowContext(tx.Statement.Context,
			"UPDATE OR FAIL sequences SET value = value + ? WHERE name = ? RETURNING value", n, messageSequence).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return 0, fmt.Errorf("advancing the sequence: %w", err)
		default:
			updated = 1
		}
	} else {
		res, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context,
			"UPDATE sequences SET value = LAST_INSERT_ID(value + ?) WHERE name = ?", n, messageSequence)
		if err == nil {
			updated, err = res.RowsAffected()
		}
		if err == nil {
			last, err = res.LastInsertId()
		}
		if err != nil {
			return 0, fmt.Errorf("advancing the sequence: %w", err)
		}
	}
	// Without the row, LAST_INSERT_ID would still answer: with whatever
	// this connection set last, handing out ids already given.
	if updated != 1 || last < n {
		return 0, fmt.Errorf("advancing the sequence: the %q row is missing (%d updated)", messageSequence, updated)
	}
	return last - n + 1, nil
}

const (
	messageColumns = "(id, room, kind, user_id, username, to_user_id, to_username, event, body, created_at)"
	// insertChunk bounds the rows of one multi-row INSERT. The SQLite
	// driver matches each placeholder to its argument by a linear search,
	// so a statement's binding costs the square of its placeholders.
	insertChunk = 64
)

// insertRows writes the batch's rows in multi-row INSERTs, built here
// rather than by GORM's Create, which walks every row's struct by
// reflection and runs its callbacks while the sequence row is locked.
//
// Numbers and plain words (room, kind, names, event: letters, digits and
// "_.-" alone) go into the statement's text; the body, the time and any
// other text are bound. That leaves two placeholders a row rather than
// ten, which is what makes the SQLite driver's binding cheap (see
// insertChunk).
//
// On SQLite the INSERT is OR FAIL: a constraint that fails stops the
// statement where it is instead of undoing it (the transaction is rolled
// back whole anyway), so that SQLite need not keep a statement journal
// for it (see deferMessageKeys).
func insertRows(ctx context.Context, tx *gorm.DB, msgs []*Message, d Dialect) error {
	conn := tx.Statement.ConnPool
	verb := "INSERT INTO messages "
	if d == SQLite {
		verb = "INSERT OR FAIL INTO messages "
	}
	var text []byte
	args := make([]any, 0, 2*min(len(msgs), insertChunk))
	for chunk := range slices.Chunk(msgs, insertChunk) {
		text = append(append(text[:0], verb...), messageColumns+" VALUES "...)
		args = args[:0]
		for i, m := range chunk {
			if i > 0 {
				text = append(text, ", "...)
			}
			text, args = appendMessageRow(text, args, m)
		}
		if _, err := conn.ExecContext(ctx, string(text), args...); err != nil {
			return err
		}
	}
	return nil
}

func appendMessageRow(text []byte, args []any, m *Message) ([]byte, []any) {
	text = append(text, '(')
	text = strconv.AppendInt(text, m.ID, 10)
	for _, word := range [...]string{m.Room, m.Kind} {
		text, args = appendWord(text, args, word)
	}
	text = append(text, ", "...)
	text = strconv.AppendInt(text, m.UserID, 10)
	text, args = appendWord(text, args, m.Username)
	if m.ToUserID != nil {
		text = append(text, ", "...)
		text = strconv.AppendInt(text, *m.ToUserID, 10)
	} else {
		text = append(text, ", NULL"...)
	}
	for _, word := range [...]string{m.ToUsername, m.Event} {
		text, args = appendWord(text, args, word)
	}
	text = append(text, ", ?, ?)"...)
	return text, append(args, m.Body, m.CreatedAt)
}

// appendWord appends ", 'word'" when every byte of word is a letter, a
// digit or one of "_.-", which no SQL dialect reads as anything but the
// text itself; anything else is bound as an argument.
func appendWord(text []byte, args []any, word string) ([]byte, []any) {
	for i := range len(word) {
		if c := word[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return append(text, ", ?"...), append(args, word)
		}
	}
	text = append(text, ", '"...)
	text = append(text, word...)
	return append(text, '\''), args
}

// Counted reports whether a message of this kind adds to its sender's
// message_count: user, action and private messages do; system ones do not.
func Counted(kind string) bool {
	return kind == KindUser || kind == KindAction || kind == KindPrivate
}

func bumpCounts(ctx context.Context, tx *gorm.DB, msgs []*Message) error {
	counts := map[int64]int64{}
	for _, m := range msgs {
		if Counted(m.Kind) {
			counts[m.UserID]++
		}
	}
	if len(counts) == 0 {
		return nil
	}
	// A fixed order keeps lock acquisition order stable across writers.
	ids := make([]int64, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// One statement for the whole batch, not one per sender: on a
	// networked database each statement is a round trip while the
	// sequence row is locked, and a batch from a busy room has dozens of
	// senders. At most countChunk senders per statement keeps it small.
	// Every value is a number, written into the text: nothing to bind.
	var text []byte
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), countChunk)]
		ids = ids[len(chunk):]
		text = append(text[:0], "UPDATE users SET message_count = message_count + CASE id"...)
		for _, id := range chunk {
			text = append(text, " WHEN "...)
			text = strconv.AppendInt(text, id, 10)
			text = append(text, " THEN "...)
			text = strconv.AppendInt(text, counts[id], 10)
		}
		text = append(text, " ELSE 0 END WHERE id IN ("...)
		for i, id := range chunk {
			if i > 0 {
				text = append(text, ',')
			}
			text = strconv.AppendInt(text, id, 10)
		}
		text = append(text, ')')
		if _, err := tx.Statement.ConnPool.ExecContext(ctx, string(text)); err != nil {
			return fmt.Errorf("counting messages: %w", err)
		}
	}
	return nil
}

// countChunk bounds the senders counted by one statement.
const countChunk = 200

// LastMessageID is the highest committed message id (0 when there is none).
func (s *Store) LastMessageID(ctx context.Context) (int64, error) {
	var last int64
	err := s.db.WithContext(ctx).Raw("SELECT value FROM sequences WHERE name = ?", messageSequence).Scan(&last).Error
	if err != nil {
		return 0, fmt.Errorf("reading the last message id: %w", err)
	}
	return last, nil
}

// MessagesAfter returns up to limit messages of every room with id > after,
// in id order. The hub uses it to fill gaps in what the broker delivered.
func (s *Store) MessagesAfter(ctx context.Context, after int64, limit int) ([]Message, error) {
	var out []Message
	err := s.db.WithContext(ctx).Where("id > ?", after).Order("id").Limit(limit).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("reading messages after %d: %w", after, err)
	}
	return out, nil
}

// Visibility is the one rule for who sees what, used by live dispatch,
// backlog, resume and paging alike: a reader in Room sees the room's
// non-private messages, and every private message they sent or received,
// whatever room it was sent from.
type Visibility struct {
	Room   string
	UserID int64
}

// Visible reports whether m passes the rule.
func (v Visibility) Visible(m *Message) bool {
	if m.Kind == KindPrivate {
		return m.UserID == v.UserID || (m.ToUserID != nil && *m.ToUserID == v.UserID)
	}
	return m.Room == v.Room
}

// VisibleAfter returns up to limit visible messages with id > after, oldest first.
func (s *Store) VisibleAfter(ctx context.Context, v Visibility, after int64, limit int) ([]Message, error) {
	return s.visible(ctx, v, "id > ?", after, "id", limit)
}

// VisibleBefore returns the newest limit visible messages with id < before,
// oldest first. Use math.MaxInt64 for "the newest".
func (s *Store) VisibleBefore(ctx context.Context, v Visibility, before int64, limit int) ([]Message, error) {
	out, err := s.visible(ctx, v, "id < ?", before, "id DESC", limit)
	slices.Reverse(out)
	return out, err
}

// Newest returns the newest limit visible messages, oldest first.
func (s *Store) Newest(ctx context.Context, v Visibility, limit int) ([]Message, error) {
	return s.VisibleBefore(ctx, v, math.MaxInt64, limit)
}

// RoomNewest returns the newest limit messages of room that everyone in
// it sees (all but private ones) with id <= upTo, oldest first. With
// PrivateNewest it answers VisibleBefore in two halves, so that the room's
// half can be kept and shared by every reader of the room.
func (s *Store) RoomNewest(ctx context.Context, room string, upTo int64, limit int) ([]Message, error) {
	out, err := roomPart(s.db.WithContext(ctx), room, "id <= ?", upTo, "id DESC", limit)
	slices.Reverse(out)
	return out, err
}

// PrivateNewest returns the newest limit private messages that userID sent
// or received with id <= upTo, oldest first.
func (s *Store) PrivateNewest(ctx context.Context, userID int64, upTo int64, limit int) ([]Message, error) {
	out, err := privatePart(s.db.WithContext(ctx), userID, "id <= ?", upTo, "id DESC", limit)
	slices.Reverse(out)
	return out, err
}

// visible runs the rule as three index-backed queries (room, sent private,
// received private) and merges them: one OR-query would leave the planner
// to scan by primary key. The three run in one read transaction, so they
// see the same commits: read at three moments, a page could show a
// batch's private message and miss the room message committed with it,
// and a reader that moves its cursor past the page would never get that
// one. (RoomNewest and PrivateNewest need none: they read up to an id
// already committed.)
func (s *Store) visible(ctx context.Context, v Visibility, cond string, cursor int64, order string, limit int) ([]Message, error) {
	var out []Message
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		room, err := roomPart(tx, v.Room, cond, cursor, order, limit)
		if err != nil {
			return err
		}
		private, err := privatePart(tx, v.UserID, cond, cursor, order, limit)
		if err != nil {
			return err
		}
		out = mergeByID(order, limit, room, private)
		return nil
	}, s.snapshotTx())
	return out, err
}

// snapshotTx asks for a transaction whose reads all see one snapshot.
// SQLite's read transactions always do (and its driver takes no options);
// MySQL's do at REPEATABLE READ, asked for here rather than trusted to be
// the server's default.
func (s *Store) snapshotTx() *sql.TxOptions {
	if s.dialect != MySQL {
		return nil
	}
	return &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
}

func roomPart(db *gorm.DB, room, cond string, cursor int64, order string, limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []Message
	err := db.Where(cond, cursor).Order(order).Limit(limit).
		Where("room = ? AND kind <> ?", room, KindPrivate).Find(&out).Error
	if err != nil {
		return nil, fmt.Errorf("reading room messages: %w", err)
	}
	return out, nil
}

func privatePart(db *gorm.DB, userID int64, cond string, cursor int64, order string, limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	var sent, received []Message
	q := db.Where(cond, cursor).Order(order).Limit(limit)
	if err := q.Where("user_id = ? AND kind = ?", userID, KindPrivate).Find(&sent).Error; err != nil {
		return nil, fmt.Errorf("reading sent private messages: %w", err)
	}
	q = db.Where(cond, cursor).Order(order).Limit(limit)
	if err := q.Where("to_user_id = ?", userID).Find(&received).Error; err != nil {
		return nil, fmt.Errorf("reading received private messages: %w", err)
	}
	return mergeByID(order, limit, sent, received), nil
}

// mergeByID merges parts in order ("id" or "id DESC"), without repeats,
// and keeps the first limit. A message to oneself would be in two parts;
// /msg refuses those, but the rule must hold regardless.
func mergeByID(order string, limit int, parts ...[]Message) []Message {
	var all []Message
	for _, p := range parts {
		all = append(all, p...)
	}
	desc := order != "id"
	slices.SortFunc(all, func(a, b Message) int {
		if desc {
			return cmpInt64(b.ID, a.ID)
		}
		return cmpInt64(a.ID, b.ID)
	})
	all = slices.CompactFunc(all, func(a, b Message) bool { return a.ID == b.ID })
	if len(all) > limit {
		all = all[:limit]
	}
	return all
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
