; Inno Setup 6 script: packs the one-folder bundle (dist\msfm-desktop, built on Windows
; by PyInstaller from installer\msfm.spec) into a per-machine or per-user setup program.
;
;   iscc /DAppVersion=0.1.0 installer\windows\msfm-desktop.iss
;
; Silent deployment (software distribution tools, GPO):
;   msfm-desktop-0.1.0-windows-x64-setup.exe /VERYSILENT /SUPPRESSMSGBOXES /ALLUSERS /NORESTART
; Silent removal: "%ProgramFiles%\MSFM Desktop\unins000.exe" /VERYSILENT
; Not built on the project's Linux build machine: see installer/README.md.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "MSFM Desktop"
#define BundleDir "..\..\dist\msfm-desktop"

[Setup]
; A fixed AppId: upgrades replace the previous version in place.
AppId={{4B8E2C1A-6F0D-4C57-9A3E-1D2B7C9E5F40}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=MSFM Desktop developers
AppComments=Radiograph abnormality localisation (decision support, not a diagnosis)
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
LicenseFile=..\..\LICENSE
SetupIconFile=..\..\resources\icons\msfm-desktop.ico
UninstallDisplayIcon={app}\msfm-desktop.exe
OutputDir=..\..\dist
OutputBaseFilename=msfm-desktop-{#AppVersion}-windows-x64-setup
; CUDA builds exceed the 4 GB a single setup file can hold: they are split into slices
; (setup.exe + setup-N.bin, kept together). A CPU-only build fits in one file.
DiskSpanning=yes
DiskSliceSize=max
Compression=lzma2/fast
SolidCompression=no
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\msfm-desktop.exe"; Comment: "Open radiograph studies and see where the model finds an abnormality"
Name: "{autoprograms}\{#AppName} licences"; Filename: "{app}\licenses\THIRD_PARTY_LICENSES.md"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\msfm-desktop.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\msfm-desktop.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; Fine-tuned models live in %LOCALAPPDATA%\MSFM\MSFM Desktop, outside {app}: an upgrade or
; an uninstall leaves them alone.
