import { configure } from "@testing-library/dom";

// CI machines are small and shared: a page that renders after a mocked call
// may take longer than the default 1 s to appear under load. Waiting longer
// changes nothing for passing tests; a missing element still fails.
configure({ asyncUtilTimeout: 5000 });
