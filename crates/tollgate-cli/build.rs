// `--version` build information (commit, profile): see deploy/build_info.rs.
include!("../../deploy/build_info.rs");
