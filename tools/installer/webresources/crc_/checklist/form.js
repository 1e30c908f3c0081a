// CleverReach connector: the form script of the newsletter checklist (web resource
// crc_/checklist/form.js). Register CleverReach.Checklist.onLoad as the form's OnLoad handler with
// "Pass execution context as first parameter" on; it hands the form context to the HTML web
// resource WebResource_crc_checklist, the way Microsoft documents it for Unified Interface
// (formContext.getControl(…).getContentWindow(), then a function the page defines).
(function () {
  "use strict";

  const CONTROL = "WebResource_crc_checklist";

  function connect(formContext) {
    const control = formContext.getControl(CONTROL);
    if (!control || typeof control.getContentWindow !== "function") {
      return;
    }
    control.getContentWindow().then((contentWindow) => {
      if (contentWindow && typeof contentWindow.setClientApiContext === "function") {
        contentWindow.setClientApiContext(window.Xrm, formContext);
      }
    });
  }

  function onLoad(executionContext) {
    const formContext = executionContext.getFormContext();
    connect(formContext);
    // The form may recreate the web resource when a tab is collapsed and expanded again;
    // connecting again is harmless (the page starts once per form context).
    const tabs = formContext.ui && formContext.ui.tabs;
    if (tabs && typeof tabs.forEach === "function") {
      tabs.forEach((tab) => {
        if (typeof tab.addTabStateChange === "function") {
          tab.addTabStateChange(() => connect(formContext));
        }
      });
    }
  }

  const root = (window.CleverReach = window.CleverReach || {});
  root.Checklist = Object.assign(root.Checklist || {}, { CONTROL, onLoad });
})();
