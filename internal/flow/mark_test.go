package flow

// testMark decodes the data plane's mark layout (internal/nft's Mark): rule
// id in bits 0-23, action in bits 24-25. The agent passes nft's own decoder;
// the tests keep theirs so that they can write marks by hand in nft rules.
// internal/flow/markcheck checks that the two layouts agree; it lives apart
// so that a data plane in the middle of a change cannot break this build.
func testMark(m uint32) (uint32, Verdict) { return m & 0xffffff, Verdict(m >> 24 & 3) }
