package app

import (
	"strings"
	"testing"
)

func TestCompareFoldMatchesToLower(t *testing.T) {
	words := []string{"", "a", "A", "ab", "aB", "Ab", "abc", "b", "Z", "z", "_", "-", ".", "0", "9", "ana", "Ana", "ANA", "bia", "Émile", "émile", "zoë", "Zoë", "load1", "load10", "load2"}
	for _, a := range words {
		for _, b := range words {
			want := strings.Compare(strings.ToLower(a), strings.ToLower(b))
			if got := compareFold(a, b); got != want {
				t.Errorf("compareFold(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}
