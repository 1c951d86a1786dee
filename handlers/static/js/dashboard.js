// The broadcaster's dashboard (filled in by the dashboard commit).
import { authState } from "./account.js";
import { $ } from "./dom.js";

authState().then((state) => {
  if (state.user) $("#who").textContent = state.user.display_name;
});
