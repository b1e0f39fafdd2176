package app

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultRoom is where a client lands when it names none.
const DefaultRoom = "general"

// Bounds from the contract.
const (
	maxMessageRunes  = 2000
	minUsernameLen   = 3
	maxUsernameLen   = 32
	minPasswordRunes = 8
	maxPasswordRunes = 256
	maxRoomLen       = 64
)

// ValidRoom reports whether name is a room name: 1–64 of a-z 0-9 _ -.
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > maxRoomLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckRoom returns the contract's invalid_room error for a bad name.
func CheckRoom(name string) error {
	if !ValidRoom(name) {
		return invalid("invalid_room", "A room name is 1 to 64 of a-z, 0-9, _ and -.")
	}
	return nil
}

func validUsername(name string) bool {
	if len(name) < minUsernameLen || len(name) > maxUsernameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func checkUsername(name string) error {
	if name == "" {
		return invalid("invalid_username", "username is required.")
	}
	if !validUsername(name) {
		return invalid("invalid_username", "username must be 3 to 32 of A-Z, a-z, 0-9, _, . and -.")
	}
	return nil
}

func checkPassword(pw string) error {
	if pw == "" {
		return invalid("invalid_password", "password is required.")
	}
	if !utf8.ValidString(pw) {
		return invalid("invalid_password", "password must be valid UTF-8.")
	}
	if n := utf8.RuneCountInString(pw); n < minPasswordRunes || n > maxPasswordRunes {
		return invalid("invalid_password", "password must be 8 to 256 characters.")
	}
	return nil
}

// NormalizeMessage applies the contract's message rules: valid UTF-8; line
// breaks become \n; surrounding whitespace is trimmed; then 1–2,000
// characters with no control character but newline and tab. Everything
// else is kept byte for byte.
func NormalizeMessage(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", invalid("invalid_message", "message must be valid UTF-8.")
	}
	if strings.ContainsRune(text, '\r') {
		text = strings.ReplaceAll(text, "\r\n", "\n")
		text = strings.ReplaceAll(text, "\r", "\n")
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return "", invalid("invalid_message", "message is required and must not be blank.")
	}
	n := 0
	for _, r := range text {
		n++
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return "", invalid("invalid_message", "message must not contain control characters other than newline and tab.")
		}
	}
	if n > maxMessageRunes {
		return "", invalid("invalid_message", "message must be at most 2000 characters.")
	}
	return text, nil
}
