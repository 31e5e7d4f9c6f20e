package guard

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// kindOf names the kind of a top-level statement node.
func kindOf(n *pg.Node) string {
	switch n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return "select"
	case *pg.Node_InsertStmt:
		return "insert"
	case *pg.Node_UpdateStmt:
		return "update"
	case *pg.Node_DeleteStmt:
		return "delete"
	case *pg.Node_MergeStmt:
		return "merge"
	case *pg.Node_TruncateStmt:
		return "truncate"
	case *pg.Node_CopyStmt:
		return "copy"
	case *pg.Node_DoStmt:
		return "do"
	case *pg.Node_CallStmt:
		return "call"
	case *pg.Node_VariableSetStmt:
		return "set"
	case *pg.Node_VariableShowStmt:
		return "show"
	case *pg.Node_TransactionStmt:
		return "transaction"
	case *pg.Node_PrepareStmt:
		return "prepare"
	case *pg.Node_ExecuteStmt:
		return "execute"
	case *pg.Node_DeallocateStmt:
		return "deallocate"
	case *pg.Node_ExplainStmt:
		return "explain"
	case *pg.Node_GrantStmt, *pg.Node_GrantRoleStmt, *pg.Node_AlterDefaultPrivilegesStmt:
		return "grant"
	case *pg.Node_LockStmt:
		return "lock"
	case *pg.Node_VacuumStmt, *pg.Node_ClusterStmt, *pg.Node_ReindexStmt, *pg.Node_CheckPointStmt:
		return "maintenance"
	case *pg.Node_DeclareCursorStmt, *pg.Node_FetchStmt, *pg.Node_ClosePortalStmt:
		return "cursor"
	case *pg.Node_ListenStmt, *pg.Node_UnlistenStmt, *pg.Node_NotifyStmt:
		return "notify"
	case nil:
		return "other"
	}
	name := oneofName(n)
	switch {
	case strings.HasPrefix(name, "Drop"):
		return "drop"
	case strings.HasPrefix(name, "Create"), strings.HasPrefix(name, "Alter"),
		strings.HasPrefix(name, "Define"), strings.HasPrefix(name, "Rename"),
		strings.HasPrefix(name, "Comment"), strings.HasPrefix(name, "SecLabel"),
		strings.HasPrefix(name, "Import"), strings.HasPrefix(name, "Reassign"),
		strings.HasPrefix(name, "Refresh"),
		name == "ViewStmt", name == "IndexStmt", name == "RuleStmt", name == "CompositeTypeStmt":
		return "ddl"
	}
	return "other"
}

// oneofName is the message name of the node a Node wraps, e.g. "CreateStmt".
func oneofName(n *pg.Node) string {
	m := n.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("node")
	if od == nil {
		return ""
	}
	fd := m.WhichOneof(od)
	if fd == nil || fd.Kind() != protoreflect.MessageKind {
		return ""
	}
	return string(fd.Message().Name())
}
