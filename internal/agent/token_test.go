package agent

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"dc1-agent", true},
		{"eu.west_2-a", true},
		{"9lives", true},
		{strings.Repeat("x", 63), true},
		{"", false},
		{strings.Repeat("x", 64), false},
		{"-lead", false},
		{".hidden", false},
		{"_x", false},
		{"has space", false},
		{"slash/no", false},
		{"glob*", false},
		{"café", false},
		{"new\nline", false},
	} {
		if got := ValidName(c.name); got != c.ok {
			t.Errorf("ValidName(%q) = %v, want %v", c.name, got, c.ok)
		}
	}
}
