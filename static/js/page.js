// The login and register pages work without JavaScript; this only puts
// their words in the reader's language from the shared table.
import { t, translatePage } from "./i18n.js";

translatePage();
const titleKey = document.body.dataset.titleKey;
if (titleKey) document.title = t("pageTitle", { page: t(titleKey) });
