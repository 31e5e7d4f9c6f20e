package postgres

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/recorder"
	"github.com/airlock-gw/airlock/internal/sealbox"
	"github.com/airlock-gw/airlock/internal/store/filestore"
)

// The masked rows event holds what the client saw; the originals are only in the store sealed,
// in a rows.original event that follows it and opens with the recording key.
func TestMaskedRowsKeepSealedOriginals(t *testing.T) {
	dir := t.TempDir()
	st, err := filestore.Open(dir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := (&recorder.Recorder{Store: st}).Start(context.Background(), recorder.Info{Protocol: Name, Target: "pg", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sealbox.New(bytes.Repeat([]byte{9}, sealbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	e := testEngine(t, nil)
	m, err := masking.New([]string{"credit_card"})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{e: e, log: e.d.Log, c: &client{target: "pg"}, rec: s, limit: 1 << 20, stmts: map[string]*stmtInfo{},
		portals: map[string]*portalInfo{}, types: newValueRenderer(), masker: newMasker(m), sealer: keys}

	const card = "4111111111111111"
	stream := encode(t,
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("card"), DataTypeOID: oidText}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("plain before")}},
		&pgproto3.DataRow{Values: [][]byte{[]byte(card)}},
		&pgproto3.DataRow{Values: [][]byte{nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 3")},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: oidText}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("nothing to mask")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
	)
	var sent []byte
	if err := feed(stream, func(typ byte, body []byte) {
		buf := append([]byte{typ, 0, 0, 0, 0}, body...)
		buf = r.rewrite(typ, buf, 0)
		r.onTargetMessage(typ, buf[5:])
		sent = append(sent, buf...)
	}); err != nil {
		t.Fatal(err)
	}
	r.flushRows()
	r.flushMaskEvent()
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sent, []byte(card)) {
		t.Fatal("the client saw the card number")
	}
	// Nothing in the store's files holds the original in clear.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(card)) || bytes.Contains(b, []byte("41111111")) {
			t.Errorf("%s holds the card number in clear", p)
		}
		return nil
	})

	var types []event.Type
	var rows, orig []byte
	var od event.RowsOriginalData
	err = st.Events(context.Background(), s.ID(), 0, func(ev *event.Event) error {
		types = append(types, ev.Type)
		switch ev.Type {
		case event.Rows:
			if rows == nil {
				rows = append([]byte{}, ev.Raw...)
			}
		case event.RowsOriginal:
			if orig != nil {
				t.Error("more than one rows.original: the unmasked result needs none")
			}
			orig = append([]byte{}, ev.Raw...)
			if err := json.Unmarshal(ev.Data, &od); err != nil {
				t.Fatal(err)
			}
			if types[len(types)-2] != event.Rows {
				t.Errorf("rows.original follows %s, not rows", types[len(types)-2])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if orig == nil || od.Count != 3 || od.KeyID != keys.KeyID() {
		t.Fatalf("rows.original %+v (events %v)", od, types)
	}
	if bytes.Contains(rows, []byte(card)) {
		t.Fatal("the rows event holds the card number")
	}
	nonce, _ := base64.StdEncoding.DecodeString(od.Nonce)
	if _, err := keys.Open(od.KeyID, nonce, orig, []byte("another-session")); err == nil {
		t.Fatal("opened with another session id as additional data")
	}
	plain, err := keys.Open(od.KeyID, nonce, orig, []byte(s.ID()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := event.DecodeRows(plain, func(v [][]byte) error {
		if v[0] == nil {
			got = append(got, "NULL")
		} else {
			got = append(got, string(v[0]))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"plain before", card, "NULL"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("originals %q, want %q", got, want)
	}
}

// COPY data, errors, notices and notifications that masking changed are followed by an original
// event holding what the target sent, sealed; unchanged ones have none.
func TestMaskedMessagesKeepSealedOriginals(t *testing.T) {
	dir := t.TempDir()
	st, err := filestore.Open(dir, filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := (&recorder.Recorder{Store: st}).Start(context.Background(), recorder.Info{Protocol: Name, Target: "pg", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sealbox.New(bytes.Repeat([]byte{7}, sealbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	e := testEngine(t, nil)
	m, err := masking.New([]string{"credit_card", "email"})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{e: e, log: e.d.Log, c: &client{target: "pg"}, rec: s, limit: 1 << 20, stmts: map[string]*stmtInfo{},
		portals: map[string]*portalInfo{}, types: newValueRenderer(), masker: newMasker(m), sealer: keys}

	const card, mail = "4111111111111111", "jane.roe@example.com"
	stream := encode(t,
		&pgproto3.CopyOutResponse{},
		&pgproto3.CopyData{Data: []byte("1\tplain\n")},
		&pgproto3.CopyData{Data: []byte("2\t" + card + "\n")},
		&pgproto3.CopyData{Data: []byte("3\tplain\n")},
		&pgproto3.CopyDone{},
		&pgproto3.CommandComplete{CommandTag: []byte("COPY 3")},
		&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "nothing here"},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "23505", Message: "duplicate key", Detail: "Key (card)=(" + card + ") already exists."},
		&pgproto3.NotificationResponse{PID: 7, Channel: "c", Payload: "to " + mail},
	)
	var sent []byte
	if err := feed(stream, func(typ byte, body []byte) {
		buf := append([]byte{typ, 0, 0, 0, 0}, body...)
		buf = r.rewrite(typ, buf, 0)
		r.onTargetMessage(typ, buf[5:])
		sent = append(sent, buf...)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.End(context.Background(), event.SessionEndData{Reason: "client_terminated"}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sent, []byte(card)) || bytes.Contains(sent, []byte(mail)) {
		t.Fatal("the client saw an original")
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(card)) || bytes.Contains(b, []byte(mail)) {
			t.Errorf("%s holds an original in clear", p)
		}
		return nil
	})

	var types []event.Type
	originals := map[event.Type]string{}
	err = st.Events(context.Background(), s.ID(), 0, func(ev *event.Event) error {
		types = append(types, ev.Type)
		if ev.Type != event.Original {
			return nil
		}
		var od event.OriginalData
		if err := json.Unmarshal(ev.Data, &od); err != nil {
			return err
		}
		if prev := types[len(types)-2]; prev != od.Of {
			t.Errorf("original of %s follows %s", od.Of, prev)
		}
		nonce, _ := base64.StdEncoding.DecodeString(od.Nonce)
		plain, err := keys.Open(od.KeyID, nonce, ev.Raw, []byte(s.ID()))
		if err != nil {
			return err
		}
		originals[od.Of] = string(plain)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := originals[event.CopyOut]; got != "1\tplain\n2\t"+card+"\n3\tplain\n" {
		t.Errorf("copy.out original %q", got)
	}
	var er event.MessageData
	if err := json.Unmarshal([]byte(originals[event.Error]), &er); err != nil || er.Detail != "Key (card)=("+card+") already exists." {
		t.Errorf("error original %q (%v)", originals[event.Error], err)
	}
	var n event.NotificationData
	if err := json.Unmarshal([]byte(originals[event.Notification]), &n); err != nil || n.Payload != "to "+mail {
		t.Errorf("notification original %q (%v)", originals[event.Notification], err)
	}
	if _, ok := originals[event.Notice]; ok || len(originals) != 3 {
		t.Errorf("originals for %v (events %v), want copy.out, error and notification only", originals, types)
	}
}
