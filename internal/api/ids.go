package api

import "time"

// Query parameters of GET /api/v1/ids/signatures.
const (
	IDSSignaturesSet      = "set"
	IDSSignaturesSID      = "sid"
	IDSSignaturesWorkload = "workload"
)

// IDSImportResult answers POST /api/v1/ids/signature-sets/{name} (the body
// is the rule file, plain or gzip'd): the version stored and what did not
// load.
type IDSImportResult struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
	SHA256  string `json:"sha256"`
	// Loaded rules are usable; Problems lists the rules that are not, with
	// their line, sid and reason.
	Loaded   int          `json:"loaded"`
	Problems []IDSProblem `json:"problems,omitempty"`
	// ByKeyword counts the problems by the unsupported keyword behind them
	// (problems of another kind are not counted here).
	ByKeyword map[string]int `json:"byKeyword,omitempty"`
}

// IDSProblem is a rule that did not load.
type IDSProblem struct {
	Line    int    `json:"line"`
	SID     uint32 `json:"sid,omitempty"`
	Reason  string `json:"reason"`
	Keyword string `json:"keyword,omitempty"`
}

// IDSSignatureSet is one imported signature set (its newest version).
type IDSSignatureSet struct {
	Name     string    `json:"name"`
	Version  int64     `json:"version"`
	Rules    int       `json:"rules"`
	Problems int       `json:"problems"`
	Created  time.Time `json:"created"`
	Author   string    `json:"author"`
	SHA256   string    `json:"sha256"`
	// Shadowed counts rules whose sid another set (earlier by name)
	// already has: the other set's rule is used.
	Shadowed int `json:"shadowed,omitempty"`
}

// IDSSignatures answers GET /api/v1/ids/signatures. Without a workload it
// lists the imported signatures (?set=, ?sid=); with one, those that
// inspect it, by which profiles and in which mode, and the ones the
// workload-aware step left out with the reason.
type IDSSignatures struct {
	Workload  string `json:"workload,omitempty"`
	Host      string `json:"host,omitempty"`
	Interface string `json:"interface,omitempty"`
	// Mode is detect or prevent; empty when no profile applies.
	Mode     string   `json:"mode,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
	// Facts are what the workload-aware step knew of the workload.
	Facts      *IDSWorkloadFacts `json:"facts,omitempty"`
	Signatures []IDSSignature    `json:"signatures"`
	LeftOut    []IDSLeftOut      `json:"leftOut,omitempty"`
	// Why explains, for ?sid= with a workload, what each applicable
	// profile decided about that signature.
	Why []string `json:"why,omitempty"`
}

// IDSWorkloadFacts is what selection knows of a workload.
type IDSWorkloadFacts struct {
	OS         string   `json:"os,omitempty"`
	Roles      []string `json:"roles,omitempty"`
	RolesFrom  string   `json:"rolesFrom,omitempty"`
	Served     []string `json:"served,omitempty"`
	RolesKnown bool     `json:"rolesKnown"`
}

// Values of IDSSignature.Enforced.
const (
	IDSEnforcedDrop   = "drop"
	IDSEnforcedReject = "reject"
)

// IDSSignature is one signature.
type IDSSignature struct {
	SID       uint32 `json:"sid"`
	Rev       uint32 `json:"rev,omitempty"`
	Set       string `json:"set"`
	Msg       string `json:"msg"`
	Action    string `json:"action"`
	Proto     string `json:"proto"`
	Classtype string `json:"classtype,omitempty"`
	Priority  int    `json:"priority"`
	// Profiles chose it for the workload; Prevent says a prevent
	// profile chose it (its drop/reject action is enforced there);
	// Enforced is what a match does to the traffic: drop or reject (the
	// flow is blocked; an alert signature blocks when a profile's
	// preventAction says so), empty when it only alerts.
	Profiles []string `json:"profiles,omitempty"`
	Prevent  bool     `json:"prevent,omitempty"`
	Enforced string   `json:"enforced,omitempty"`
	// Rule is the text as imported, given when one sid is asked for.
	Rule string `json:"rule,omitempty"`
}

// IDSLeftOut is a signature a profile's filter chose that the
// workload-aware step left out for a workload.
type IDSLeftOut struct {
	SID     uint32 `json:"sid"`
	Msg     string `json:"msg"`
	Profile string `json:"profile"`
	Reason  string `json:"reason"`
}
