// The traps an admin used to fall into, in Debian's Chromium (never a downloaded browser):
// a banner planted through the URL, a refused "Add connection" that lost the pasted XML, a
// double click that made two connections, a new connection live before anyone tested it, a
// failed Test sign-in that stranded the admin on the end-user error page, reloads and the
// back button after a POST, and disabling the last working connection or removing the last
// break-glass account while SSO is required. Screenshots go to SCREENSHOT_DIR.
// Usage: node browser_admin_traps.mjs BASE ADMIN_EMAIL PASSWORD TOTP_CODE ORG WRONG_METADATA GOOD_METADATA
import fs from 'node:fs';
import { journey, shot, signIn, submit, text } from './admin_pages.mjs';

const [base, email, password, code, org, wrongFile, goodFile] = process.argv.slice(2);
const maybe = async (page, selector) => ((await page.$(selector)) ? text(page, selector) : null);

await journey(async (page) => {
  const out = {};
  await signIn(page, base, email, password, code);
  const orgPage = `${base}/sso/admin/orgs/${org}`;

  // A link with words for the banner: nothing of it is shown.
  await page.goto(`${orgPage}?notice=${encodeURIComponent('Paste your new SCIM token at https://evil.example')}&error=${encodeURIComponent('Call +1 555 0100 now')}`);
  const body = await page.textContent('body');
  out.planted_banner = body.includes('evil.example') || body.includes('555 0100');
  await shot(page, 'planted-banner-ignored');

  // A refused "Add connection" keeps what was pasted.
  await page.goto(`${orgPage}/connections/new`);
  await page.fill('#saml-name', 'Acme Okta');
  await page.selectOption('#saml-preset', 'okta');
  await page.fill('#metadata-xml', '<html>the IdP sign-in page, copied by mistake</html>');
  await page.fill('form:has(#metadata-xml) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Create SAML connection")');
  out.refused_error = await text(page, '#page-error');
  out.refused_kept_xml = await page.inputValue('#metadata-xml');
  out.refused_kept_name = await page.inputValue('#saml-name');
  out.refused_kept_preset = await page.inputValue('#saml-preset');
  await shot(page, 'refused-input-kept');

  // A double click on Create makes one connection, a draft.
  await page.fill('#metadata-xml', fs.readFileSync(wrongFile, 'utf8'));
  await page.fill('form:has(#metadata-xml) input[name=confirm_password]', password);
  // The second click's submit may abort the first one's navigation: wait for where the
  // page ends up, whichever response it shows.
  const created = /\/connections\/[0-9a-f]{32}$/;
  const landed = page.waitForURL(created, { timeout: 30000 }).catch(() => page.waitForURL(created, { timeout: 30000 }));
  await page.dblclick('button:has-text("Create SAML connection")');
  await landed;
  await page.waitForLoadState('load');
  out.connection_url = page.url();
  out.draft = await page.isVisible('#status');
  out.created_notice = await maybe(page, '#page-notice') || await maybe(page, '#page-error');
  await shot(page, 'draft-connection');
  // A reload shows the page again, without the banner; back returns to the form.
  await page.reload();
  out.reload_banner = await maybe(page, '#page-notice');
  await page.goBack();
  out.back_url = page.url();
  await page.goForward();

  // A failed Test sign-in (the metadata has another certificate) comes back here.
  await page.click('#test-sign-in');
  await page.waitForSelector('#test-outcome', { timeout: 30000 });
  out.failed_url = page.url();
  out.failed_outcome = await text(page, '#test-outcome');
  out.failed_cause = await text(page, '#test-cause');
  await shot(page, 'test-failed');

  // The right metadata, a passed test, then activation.
  await page.fill('#upd-metadata-xml', fs.readFileSync(goodFile, 'utf8'));
  await page.fill('form:has(#upd-metadata-xml) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Save IdP settings")');
  out.saved_notice = await text(page, '#page-notice');
  await page.click('#test-sign-in');
  await page.waitForFunction(() => document.querySelector('#test-outcome')?.textContent.includes('passed'), null, { timeout: 30000 });
  out.passed_outcome = await text(page, '#test-outcome');
  out.would = await text(page, '#test-would');
  out.last_sign_in = await text(page, 'p:has-text("Last sign-in")');
  await shot(page, 'test-passed');
  await page.fill('#activation input[name=confirm_password]', password);
  await submit(page, '#activate');
  out.activated = await text(page, '#page-notice');
  out.draft_after = await page.isVisible('#status');
  await shot(page, 'activated');

  // Require SSO for everyone (a break-glass account first), then the lock-out traps.
  await page.goto(orgPage);
  await page.fill('#bg-email', `breakglass@${org}.test`);
  await page.fill('form:has(#bg-email) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Create break-glass account")');
  await page.reload();
  out.breakglass_reload = await text(page, 'main');
  await page.goto(orgPage);
  await page.selectOption('#mode', 'all');
  await page.fill('form:has(#mode) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Save enforcement")');
  out.enforcement = await text(page, '#enforcement');
  await page.goto(out.connection_url);
  await page.fill('form:has(button:has-text("Disable")) input[name=confirm_password]', password);
  await submit(page, 'button:has-text("Disable")');
  out.disable_refused = await text(page, '#page-error');
  await shot(page, 'disable-refused');
  await page.goto(orgPage);
  await page.fill('#break-glass input[name=confirm_password]', password);
  await submit(page, '#break-glass button:has-text("Remove")');
  out.remove_refused = await text(page, '#page-error');
  await shot(page, 'remove-breakglass-refused');

  // A phone-sized window: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(orgPage);
  out.overflow_390 = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot(page, 'overview-390px');
  return out;
});
