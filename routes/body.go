package routes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// maxBody is the contract's body limit.
const maxBody = 64 << 10

// fields are a POST's fields, read once from a form or a JSON object as
// its Content-Type says.
type fields struct {
	form url.Values
	json map[string]json.RawMessage
}

// readFields parses the body. Errors carry the contract's status: 413 for
// a body over 64 KiB, 415 for a type that is neither form nor JSON, 400
// for a malformed one.
func readFields(c *gin.Context) (*fields, error) {
	r := c.Request
	// Wrapped first, so that whatever reads the body later (a form page
	// echoing a field, gin) meets the limit too, even after a refusal
	// here.
	r.Body = http.MaxBytesReader(c.Writer, r.Body, maxBody)
	if r.ContentLength > maxBody {
		return nil, errTooLarge
	}
	ct := r.Header.Get("Content-Type")
	mediaType, _, _ := mime.ParseMediaType(ct)
	switch {
	case ct == "" && r.ContentLength == 0:
		return &fields{form: url.Values{}}, nil
	case mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"):
		return readJSON(r)
	case mediaType == "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, bodyError(err)
		}
		return &fields{form: r.PostForm}, nil
	case mediaType == "multipart/form-data":
		if err := r.ParseMultipartForm(maxBody); err != nil {
			return nil, bodyError(err)
		}
		return &fields{form: r.PostForm}, nil
	default:
		return nil, &errRequest{http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Send the fields as a form (application/x-www-form-urlencoded or multipart/form-data) or as a JSON object (application/json)."}
	}
}

var errTooLarge = &errRequest{http.StatusRequestEntityTooLarge, "body_too_large", "The request body is over 64 KiB."}

func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || strings.Contains(err.Error(), "too large") {
		return errTooLarge
	}
	return &errRequest{http.StatusBadRequest, "invalid_body", "The request body could not be read: " + err.Error()}
}

func readJSON(r *http.Request) (*fields, error) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, bodyError(err)
	}
	// encoding/json would take invalid UTF-8 in a string as U+FFFD: the
	// text stored would not be the text sent, which a form post refuses.
	if !utf8.Valid(raw) {
		return nil, &errRequest{http.StatusBadRequest, "invalid_json", "The body must be a JSON object in valid UTF-8."}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, &errRequest{http.StatusBadRequest, "invalid_json", "The body must be a JSON object."}
	}
	return &fields{json: obj}, nil
}

// str returns a text field; absent is "". A JSON value that is not a
// string, and text that is not valid UTF-8, are errors naming the field.
func (f *fields) str(name string) (string, error) {
	var s string
	if f.json != nil {
		raw, ok := f.json[name]
		if !ok || string(raw) == "null" {
			return "", nil
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", &errRequest{http.StatusBadRequest, "invalid_" + name, fmt.Sprintf("%s must be a string.", name)}
		}
		// encoding/json decodes a lone surrogate escape (\ud800) to
		// U+FFFD rather than refusing it; a U+FFFD the literal did not
		// spell out is such a one. (Counted only when there is one: most
		// text has none, and the scan is then skipped.)
		if n := strings.Count(s, "\uFFFD"); n > 0 && n > replacementsIn(raw) {
			return "", &errRequest{http.StatusBadRequest, "invalid_" + name,
				fmt.Sprintf("%s must be valid Unicode: it has an unpaired surrogate escape.", name)}
		}
	} else if vs := f.form[name]; len(vs) > 0 {
		s = vs[0]
	}
	if !utf8.ValidString(s) {
		return "", &errRequest{http.StatusBadRequest, "invalid_" + name, fmt.Sprintf("%s must be valid UTF-8.", name)}
	}
	return s, nil
}

// replacementsIn counts the U+FFFD a JSON string literal spells out, as
// the character itself or as the escape \ufffd in any case. raw is valid
// UTF-8 (readJSON checked).
func replacementsIn(raw []byte) int {
	n := 0
	for i := 0; i < len(raw); {
		if raw[i] == '\\' {
			if i+5 < len(raw) && raw[i+1] == 'u' && strings.EqualFold(string(raw[i+2:i+6]), "fffd") {
				n++
				i += 6
			} else {
				i += 2 // \\ and the like: the next byte is not an escape's start
			}
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size == 3 {
			n++
		}
		i += size
	}
	return n
}

// boolean reads true/false, from a JSON boolean or the strings "true",
// "false", "on", "off" (any case), "1" and "0". JSON null is taken as
// absent, as str takes it; JSON numbers are refused.
func (f *fields) boolean(name string) (value, present bool, err error) {
	bad := &errRequest{http.StatusBadRequest, "invalid_" + name, fmt.Sprintf("%s must be true or false.", name)}
	if f.json != nil {
		raw, ok := f.json[name]
		if !ok || string(raw) == "null" {
			// Unmarshalling null into a bool succeeds and leaves false:
			// null would pass as a choice nobody made.
			return false, false, nil
		}
		if err := json.Unmarshal(raw, &value); err == nil {
			return value, true, nil
		}
	}
	s, err := f.str(name)
	if err != nil {
		return false, false, bad
	}
	if s == "" {
		if f.json != nil {
			return false, false, bad
		}
		return false, false, nil
	}
	switch strings.ToLower(s) {
	case "true", "1", "on":
		return true, true, nil
	case "false", "0", "off":
		return false, true, nil
	}
	return false, false, bad
}
