package e2e

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	myclient "github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// TestMySQLCursorFetch drives a server-side cursor through the gateway (COM_STMT_EXECUTE with
// CURSOR_TYPE_READ_ONLY, then COM_STMT_FETCH), which go-sql-driver never opens: the fetched rows
// must be masked and recorded masked. MariaDB's PREPARE of `select ?, card ...` reports the
// parameter's column as type NULL while the execute that opens the cursor reports a string; the
// fetched rows follow the execute's layout.
func TestMySQLCursorFetch(t *testing.T) {
	direct := requireMySQL(t)
	tbl := fmt.Sprintf("airlock_mycur_%d", time.Now().UnixNano()%1e12)
	policies := fmt.Sprintf(`policies:
  - name: masked
    subjects: ["*"]
    targets: ["my"]
    access: allow
    masking: [credit_card, %s]
`, yq("column:"+tbl+".cvv"))
	g := startMySQLGateway(t, gwConfig{Extra: policies})
	mustMy(t, direct, fmt.Sprintf("create table test.%s (id int primary key, card varchar(40), cvv varchar(8))", tbl))
	t.Cleanup(func() { direct.Exec("drop table if exists test." + tbl) })
	mustMy(t, direct, fmt.Sprintf("insert into test.%s values (1, '4111 1111 1111 1111', '123'), (2, '5500-0000-0000-0004', '987')", tbl))

	c, err := myclient.Connect(fmt.Sprintf("127.0.0.1:%d", g.Port("mysql")), "alice", alicePassword, "my/test",
		func(c *myclient.Conn) error { c.SetTLSConfig(&tls.Config{InsecureSkipVerify: true}); return nil })
	if err != nil {
		t.Fatalf("connect through the gateway: %v", err)
	}
	defer c.Close()

	marker := uniq("mycursor")
	// go-mysql's client has no cursor API: the commands are written as packets.
	cmd := func(payload ...byte) {
		t.Helper()
		c.ResetSequence()
		if err := c.WritePacket(append([]byte{0, 0, 0, 0}, payload...)); err != nil {
			t.Fatal(err)
		}
	}
	read := func() []byte {
		t.Helper()
		p, err := c.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if p[0] == mysql.ERR_HEADER {
			t.Fatalf("gateway answered with an error: %q", p)
		}
		return p
	}
	untilEOF := func() (fields []*mysql.Field, status uint16) {
		t.Helper()
		for {
			p := read()
			if p[0] == mysql.EOF_HEADER && len(p) < 9 {
				return fields, binary.LittleEndian.Uint16(p[3:])
			}
			var f mysql.Field
			if err := f.Parse(p); err != nil {
				t.Fatal(err)
			}
			fields = append(fields, &f)
		}
	}

	cmd(append([]byte{mysql.COM_STMT_PREPARE}, fmt.Sprintf("select ? as m, card, cvv from %s order by id /* %s */", tbl, marker)...)...)
	ok := read()
	id := binary.LittleEndian.Uint32(ok[1:])
	if cols, params := binary.LittleEndian.Uint16(ok[5:]), binary.LittleEndian.Uint16(ok[7:]); cols != 3 || params != 1 {
		t.Fatalf("prepare: %d columns, %d parameters", cols, params)
	}
	untilEOF() // parameters
	untilEOF() // columns

	exec := binary.LittleEndian.AppendUint32([]byte{mysql.COM_STMT_EXECUTE}, id)
	exec = append(exec, 1 /* CURSOR_TYPE_READ_ONLY */, 1, 0, 0, 0, 0 /* null bitmap */, 1 /* types bound */, mysql.MYSQL_TYPE_VAR_STRING, 0)
	exec = append(exec, mysql.PutLengthEncodedString([]byte("x"))...)
	cmd(exec...)
	read() // column count
	fields, status := untilEOF()
	if status&mysql.SERVER_STATUS_CURSOR_EXISTS == 0 {
		t.Fatalf("the execute opened no cursor (status %#x)", status)
	}
	var got []string
	for done := false; !done; {
		cmd(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32([]byte{mysql.COM_STMT_FETCH}, id), 1)...)
		for {
			p := read()
			if p[0] == mysql.EOF_HEADER && len(p) < 9 {
				done = binary.LittleEndian.Uint16(p[3:])&mysql.SERVER_STATUS_LAST_ROW_SEND != 0
				break
			}
			vals, err := mysql.RowData(p).ParseBinary(fields, nil)
			if err != nil {
				t.Fatalf("fetched row %q: %v", p, err)
			}
			var row []string
			for _, v := range vals {
				row = append(row, fmt.Sprintf("%s", v.AsString()))
			}
			got = append(got, strings.Join(row, "|"))
		}
	}
	want := []string{"x|**** **** **** 1111|***", "x|****-****-****-0004|***"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("fetched rows %q, want %q", got, want)
	}
	c.Close()

	_, ev := g.mySession(t, marker)
	rec := fmt.Sprint(rowsOf(ev))
	for _, raw := range []string{"4111 1111 1111 1111", "5500-0000-0000-0004", "123", "987"} {
		if strings.Contains(rec, raw) {
			t.Errorf("the recording keeps %q in clear: %s", raw, rec)
		}
	}
	if !strings.Contains(rec, "**** **** **** 1111") {
		t.Errorf("the recording lacks the masked rows: %s", rec)
	}
}
