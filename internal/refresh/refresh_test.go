package refresh

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func change(id string) Change {
	return Change{ID: id, Time: time.Unix(1700000000, 0).UTC(), Vault: "kv1", Kind: KindSecret, Name: "s" + id, Version: "v" + id}
}

func TestChangesRoundTrip(t *testing.T) {
	var list []Change
	for i := range MaxChanges + 4 {
		var added bool
		list, added = Add(list, change(fmt.Sprint(i)))
		if !added {
			t.Fatalf("change %d not added", i)
		}
	}
	if len(list) != MaxChanges || list[0].ID != "4" || list[len(list)-1].ID != fmt.Sprint(MaxChanges+3) {
		t.Fatalf("list keeps %d, first %s last %s; want the newest %d", len(list), list[0].ID, list[len(list)-1].ID, MaxChanges)
	}
	if _, added := Add(list, change("7")); added {
		t.Fatal("a change of a known ID was added again")
	}
	got, err := ParseChanges(FormatChanges(list))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(list) {
		t.Fatalf("round trip: got %v, want %v", got, list)
	}
}

func TestParseChanges(t *testing.T) {
	for _, tc := range []struct {
		in      string
		n       int
		wantErr string
	}{
		{"", 0, ""},
		{"  ", 0, ""},
		{"[]", 0, ""},
		{`[{"id":"1","vault":"kv","kind":"secret","name":"a"}]`, 1, ""},
		{`[{"id":"1","vault":"kv","kind":"certificate","name":"a","version":"x"}]`, 1, ""},
		{`[{"id":"","vault":"kv","kind":"secret","name":"a"}]`, 0, "no id"},
		{`[{"id":"1","vault":"kv","kind":"blob","name":"a"}]`, 0, "kind"},
		{`[{"id":"1","kind":"secret","name":"a"}]`, 0, "no vault"},
		{`{"id":"1"}`, 0, "cannot unmarshal"},
		{`not json`, 0, "invalid character"},
	} {
		got, err := ParseChanges(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("ParseChanges(%q): err %v, want one saying %q", tc.in, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseChanges(%q): %v", tc.in, err)
		case len(got) != tc.n:
			t.Errorf("ParseChanges(%q): %d changes, want %d", tc.in, len(got), tc.n)
		}
	}
}

func TestNew(t *testing.T) {
	a, b, c := change("a"), change("b"), change("c")
	for _, tc := range []struct {
		old, cur []Change
		want     string
	}{
		{nil, []Change{a}, "a"},
		{[]Change{a}, []Change{a, b}, "b"},
		{[]Change{a, b}, []Change{b, c}, "c"},
		{[]Change{a, b}, []Change{a, b}, ""},
		{[]Change{a, b, c}, nil, ""},
	} {
		var ids []string
		for _, x := range New(tc.old, tc.cur) {
			ids = append(ids, x.ID)
		}
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("New(%v, %v) = %s, want %s", tc.old, tc.cur, got, tc.want)
		}
	}
}

func TestRequestMerge(t *testing.T) {
	t1, t2 := time.Unix(100, 0).UTC(), time.Unix(200, 0).UTC()
	a, b := change("a"), change("b")
	for _, tc := range []struct {
		name     string
		r, o     Request
		since    time.Time
		all      bool
		nChanges int
	}{
		{"later since wins", Request{Since: t1, Changes: []Change{a}}, Request{Since: t2, Changes: []Change{b}}, t2, false, 2},
		{"either order", Request{Since: t2, Changes: []Change{a}}, Request{Since: t1, Changes: []Change{a}}, t2, false, 1},
		{"all absorbs changes", Request{Since: t1, All: true}, Request{Since: t2, Changes: []Change{b}}, t2, true, 0},
		{"into empty", Request{}, Request{Since: t1, Changes: []Change{a}}, t1, false, 1},
	} {
		m := tc.r.Merge(tc.o)
		if !m.Since.Equal(tc.since) || m.All != tc.all || len(m.Changes) != tc.nChanges {
			t.Errorf("%s: got since %v all %v %d changes; want %v %v %d", tc.name, m.Since, m.All, len(m.Changes), tc.since, tc.all, tc.nChanges)
		}
		got, err := ParseRequest(m.Format())
		if err != nil || !got.Since.Equal(m.Since) || got.All != m.All || len(got.Changes) != len(m.Changes) {
			t.Errorf("%s: round trip gave %+v, %v", tc.name, got, err)
		}
	}
}

func TestParseRequestRefuses(t *testing.T) {
	for _, in := range []string{``, `{}`, `{"since":"2026-01-01T00:00:00Z","changes":[{"id":"1"}]}`, `[1]`} {
		if _, err := ParseRequest(in); err == nil {
			t.Errorf("ParseRequest(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(FormatChanges([]Change{change("1"), change("2")}))
	f.Add(Request{Since: time.Unix(5, 0), Changes: []Change{change("x")}}.Format())
	f.Add(`[{"id":"1","vault":"kv","kind":"key","name":"a"}]`)
	f.Fuzz(func(t *testing.T, s string) {
		if cs, err := ParseChanges(s); err == nil {
			again, err := ParseChanges(FormatChanges(cs))
			if err != nil || len(again) != len(cs) {
				t.Fatalf("changes %q do not round-trip: %v", s, err)
			}
		}
		if r, err := ParseRequest(s); err == nil {
			if _, err := ParseRequest(r.Format()); err != nil {
				t.Fatalf("request %q does not round-trip: %v", s, err)
			}
		}
	})
}
