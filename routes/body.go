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
	if r.ContentLength > maxBody {
		return nil, errTooLarge
	}
	r.Body = http.MaxBytesReader(c.Writer, r.Body, maxBody)
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
	} else if vs := f.form[name]; len(vs) > 0 {
		s = vs[0]
	}
	if !utf8.ValidString(s) {
		return "", &errRequest{http.StatusBadRequest, "invalid_" + name, fmt.Sprintf("%s must be valid UTF-8.", name)}
	}
	return s, nil
}

// boolean reads true/false, from a JSON boolean or the strings "true" and
// "false" (any case), "1" and "0".
func (f *fields) boolean(name string) (value, present bool, err error) {
	bad := &errRequest{http.StatusBadRequest, "invalid_" + name, fmt.Sprintf("%s must be true or false.", name)}
	if f.json != nil {
		raw, ok := f.json[name]
		if !ok {
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
