// Package models holds papo's GORM models, its migrations and every query
// the application makes. It knows nothing of HTTP or of the app layer.
package models

import "time"

// Message kinds, as the contract names them.
const (
	KindUser    = "user"
	KindSystem  = "system"
	KindAction  = "action"
	KindPrivate = "private"
)

// System message events.
const (
	EventJoin  = "join"
	EventLeave = "leave"
)

// User is an account. Username keeps the case it was registered with;
// UsernameKey is its lower-case form, unique, so that names are unique
// without regard to case on every database.
type User struct {
	ID           int64     `gorm:"primaryKey"`
	Username     string    `gorm:"size:32;not null"`
	UsernameKey  string    `gorm:"size:32;not null;uniqueIndex:idx_users_username_key"`
	PasswordHash string    `gorm:"size:255;not null"`
	MessageCount int64     `gorm:"not null;default:0"`
	CreatedAt    time.Time `gorm:"not null"`
}

// Message is one entry of the global message sequence. Its ID is not an
// auto-increment: the batch writer hands IDs out from the sequences row
// inside the insert transaction, so IDs are given in commit order (see
// InsertMessages).
//
// The three composite indexes serve the one visibility rule (room messages,
// private messages sent, private messages received), each ordered by id for
// resume and paging.
type Message struct {
	ID         int64     `gorm:"primaryKey;autoIncrement:false;index:idx_messages_room_id,priority:2;index:idx_messages_sender_kind_id,priority:3;index:idx_messages_to_id,priority:2"`
	Room       string    `gorm:"size:64;not null;index:idx_messages_room_id,priority:1"`
	Kind       string    `gorm:"size:16;not null;index:idx_messages_sender_kind_id,priority:2"`
	UserID     int64     `gorm:"not null;index:idx_messages_sender_kind_id,priority:1"`
	Username   string    `gorm:"size:32;not null"`
	ToUserID   *int64    `gorm:"index:idx_messages_to_id,priority:1"`
	ToUsername string    `gorm:"size:32;not null;default:''"`
	Event      string    `gorm:"size:16;not null;default:''"`
	Body       string    `gorm:"type:text;not null"`
	CreatedAt  time.Time `gorm:"not null"`

	Sender    *User `gorm:"foreignKey:UserID;constraint:OnDelete:CASCADE" json:"-"`
	Recipient *User `gorm:"foreignKey:ToUserID;constraint:OnDelete:CASCADE" json:"-"`

	// PresenceStamp, on a join or leave, is its decision's place in the
	// order presence decided them (see PresenceMark); 0 stores it
	// unconditionally. It is not a column.
	PresenceStamp int64 `gorm:"-" json:"-"`
}

// PresenceMark is the stamp of the latest join or leave stored for a user
// in a room. With several instances, a leave and an immediate rejoin may
// be decided on two of them and reach the database in either order; the
// mark lets the one that arrives late, superseded, be dropped rather than
// stored after the decision that followed it (see InsertMessages). There
// is no foreign key: a mark outliving its user is a few bytes, and ids
// are never reused.
type PresenceMark struct {
	Room   string `gorm:"primaryKey;size:64"`
	UserID int64  `gorm:"primaryKey;autoIncrement:false"`
	Stamp  int64  `gorm:"not null"`
}

// Session is a server-side login session; the cookie carries only its
// signed ID, so deleting the row ends the session on every instance.
type Session struct {
	ID        string    `gorm:"primaryKey;size:64"`
	UserID    *int64    `gorm:"index:idx_sessions_user_id"`
	Data      []byte    `gorm:"not null"`
	ExpiresAt time.Time `gorm:"not null;index:idx_sessions_expires_at"`
	CreatedAt time.Time `gorm:"not null"`
	UpdatedAt time.Time `gorm:"not null"`

	User *User `gorm:"foreignKey:UserID;constraint:OnDelete:CASCADE" json:"-"`
}

// Setting is a named value that all instances sharing a database agree on,
// such as the generated session secret.
type Setting struct {
	Name  string `gorm:"primaryKey;size:64"`
	Value string `gorm:"type:text;not null"`
}

// Sequence is a named counter. The "messages" row gives message IDs; its
// row lock, taken by the UPDATE in InsertMessages, orders commits.
type Sequence struct {
	Name  string `gorm:"primaryKey;size:32"`
	Value int64  `gorm:"not null;default:0"`
}

const messageSequence = "messages"
