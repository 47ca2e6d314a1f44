package api

// Query parameters of POST /api/v1/flows/import, whose body is the file
// itself (streamed, any size).
const (
	FlowImportFormat = "format" // FlowFormatZeek
	// FlowImportHost names the sensor that wrote the file; the records'
	// host is "zeek/" and this name ("default" when empty).
	FlowImportHost = "host"
)

// FlowFormatZeek is Zeek's conn.log, tab-separated or JSON lines.
const FlowFormatZeek = "zeek"

// FlowImportResult says what an import stored and what it skipped.
type FlowImportResult struct {
	Format string `json:"format"`
	// Host is the host of the stored records (filter GET /flows with it).
	Host string `json:"host"`
	// Records were stored; records of a connection already stored merge
	// with it, so importing a file twice changes nothing.
	Records int `json:"records"`
	// Skipped lines could not be read as connections.
	Skipped int `json:"skipped"`
	// Errors are the first skipped lines with their reasons.
	Errors []FlowImportLineError `json:"errors,omitempty"`
}

// FlowImportLineError is one skipped line.
type FlowImportLineError struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}
